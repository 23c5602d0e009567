#!/usr/bin/env bash
# What serving stale costs: GetSecret on two daemons over one OpenBao,
#   a. cached-get: expire-after-write 10m, so every read is a cache hit;
#   b. stale-get:  expire-after-write 1s, OpenBao killed, circuit breaker
#      open, so every read finds an expired entry and is answered stale;
# interleaved ROUNDS times, medians, same generator settings as bench.sh.
#
#   scripts/bench-stale.sh [concurrency] [requests] [connections] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
C=${1:-50}
N=${2:-200000}
K=${3:-4}
ROUNDS=${4:-3}
KEYS=100

. scripts/bench-setup.sh
# bench-setup.sh built without the Vault backend; this run needs it.
cargo build --release -q -p secretd --no-default-features --features vault
while IFS= read -r line; do export "${line?}"; done < <(scripts/servers/openbao.sh)
pids+=("$SECRETD_TEST_VAULT_PID")

daemon() { # port expire-after-write
    cat >"$work/$1.yaml" <<YAML
server:
  listen: 127.0.0.1:$1
  admin: {listen: 127.0.0.1:$(($1 + 100))}
secret:
  type: vault
  vault:
    address: $SECRETD_TEST_VAULT_ADDR
    token: {token: $SECRETD_TEST_VAULT_TOKEN}
    path-prefix: bench-$1
    circuit-breaker: {failure-threshold: 3, open-for: 1h}
  cache:
    maximum-size: 10000
    expire-after-write: $2
    refresh-ahead: 0
state:
  url: sqlite://$work/state-$1.db
auth:
  service-accounts:
    - name: bench
      service: WORKER
      permissions: [read, write]
      token-sha256: $TOKEN_HASH
audit:
  sink: file
  path: $work/audit-$1.log
YAML
    SECRETD_LOG=warn "$SECRETD" serve --config "$work/$1.yaml" &
    pids+=($!)
    "$BENCH" wait --addr "127.0.0.1:$1"
    "$BENCH" seed --addr "127.0.0.1:$1" --key-count "$KEYS" 2>/dev/null
    # Read every key once, so both caches hold them all.
    "$BENCH" load --addr "127.0.0.1:$1" --concurrency 1 --requests "$KEYS" --warmup 0 --key-count "$KEYS" >/dev/null
}

daemon 47921 10m
daemon 47922 1s
kill -9 "$SECRETD_TEST_VAULT_PID"
sleep 2
results=()
for _ in $(seq "$ROUNDS"); do
    results+=("$(load cached-get 127.0.0.1:47921)")
    results+=("$(load stale-get 127.0.0.1:47922)")
done
printf '%s\n' "${results[@]}" >&2
printf '%s\n' "${results[@]}" | python3 scripts/bench-table.py cached
stale=$(curl -s "http://127.0.0.1:48022/metrics" | awk '/^secretd_stale_serves_total/ {print $2}')
breaker=$(curl -s "http://127.0.0.1:48022/metrics" | awk '/^secretd_circuit_breaker_state/ {print $2}')
echo
echo "stale-get daemon: secretd_stale_serves_total=$stale secretd_circuit_breaker_state=$breaker"
echo "concurrency=$C requests=$N connections=$K keys=$KEYS rounds=$ROUNDS ($(nproc) cores, client and servers on one machine)"
