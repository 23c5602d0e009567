# Sourced by scripts/bench.sh, bench-stale.sh and soak.sh: builds the
# release binaries and prepares what every run needs. Sets SECRETD, BENCH,
# work (a temporary directory), SECRETD_TOKEN and TOKEN_HASH, and pids
# (servers started by the caller, stopped by PID at exit with the directory
# removed). Defines `load LABEL ADDR`: one measured run with the caller's
# C, N, K and KEYS, as a JSON line for scripts/bench-table.py.

# The measured path (authentication, policy, cache, SQLite, metrics, audit)
# does not depend on the cloud SDKs; leaving them out keeps the release
# build short.
cargo build --release -q -p secretd --no-default-features -p secretd-bench
SECRETD="${CARGO_TARGET_DIR:-target}/release/secretd"
BENCH="${CARGO_TARGET_DIR:-target}/release/secretd-bench"
work=$(mktemp -d)
# secretd authenticates every call: a token for the generator, declared in
# the config by its hash, as a stateless sidecar would.
export SECRETD_TOKEN="sdt_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
TOKEN_HASH=$(printf '%s' "$SECRETD_TOKEN" | "$SECRETD" token hash)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

load() { # label addr   (LOAD_PIN, a taskset prefix, places the generator on a core)
    ${LOAD_PIN:-} "$BENCH" load --addr "$2" --concurrency "$C" --requests "$N" --connections "$K" \
        --key-count "$KEYS" --label "$1" --json
}

# Starts a secretd on 127.0.0.1:PORT (cache on or off) as in production:
# a bearer token, the policy, metrics and the audit trail to a file; waits
# for it and seeds KEYS keys. BINARY defaults to the one just built, and
# PIN (a taskset prefix) places it on a core.
daemon() { # port cache-enabled [binary]
    cat >"$work/$1.yaml" <<YAML
server:
  listen: 127.0.0.1:$1
  admin: {listen: 127.0.0.1:$(($1 + 100))}
secret:
  type: jdbc
  jdbc:
    url: sqlite://$work/bench-$1.db
    secret: bench-secret-of-at-least-32-characters
  cache:
    enabled: $2
    maximum-size: 10000
    expire-after-write: 10m
state:
  url: sqlite://$work/state-$1.db
auth:
  service-accounts:
    - name: bench
      service: WORKER
      permissions: [read, write]
      token-sha256: $TOKEN_HASH
audit:
  sink: ${AUDIT_SINK:-file}
  path: $work/audit-$1.log
YAML
    SECRETD_LOG=warn ${PIN:-} "${3:-$SECRETD}" serve --config "$work/$1.yaml" &
    pids+=($!)
    "$BENCH" wait --addr "127.0.0.1:$1"
    "$BENCH" seed --addr "127.0.0.1:$1" --key-count "$KEYS" 2>/dev/null
}
