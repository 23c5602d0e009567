#!/usr/bin/env bash
# The load benchmark: GetSecret over gRPC against
#   a. the baseline: a bare tonic server answering a fixed message (the ceiling),
#   b. secretd with the cache on (every read a cache hit after warm-up),
#   c. secretd with the cache off, reading SQLite on every call,
# all with the same generator settings. secretd runs as in production:
# every call authenticated (a bearer token), authorized and audited to a file.
# Prints a markdown table.
#
#   scripts/bench.sh [concurrency] [requests] [connections] [rounds]
#   AUDIT_SINK=off scripts/bench.sh     # the same without the audit trail
#   scripts/bench.sh migrate            # secretd migrate, 10,000 secrets (scripts/bench-migrate.sh)
#   scripts/bench.sh rekey [count]      # secretd rekey, 10,000 secrets (scripts/bench-rekey.sh)
#
# Client and servers share this machine's cores; loopback only; every server
# started here is stopped by PID at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
case ${1:-} in
    migrate) exec scripts/bench-migrate.sh ;;
    rekey) shift; exec scripts/bench-rekey.sh "$@" ;;
esac
C=${1:-50}
N=${2:-200000}
K=${3:-4}
# Scenarios run interleaved, ROUNDS times each, and the table shows medians:
# on a small shared machine one run can be off by 15% either way.
ROUNDS=${4:-5}
KEYS=100

. scripts/bench-setup.sh

"$BENCH" baseline-server --listen 127.0.0.1:47911 2>/dev/null &
pids+=($!)
"$BENCH" wait --addr 127.0.0.1:47911
daemon 47912 true
daemon 47913 false

results=()
for _ in $(seq "$ROUNDS"); do
    results+=("$(load baseline 127.0.0.1:47911)")
    results+=("$(load cached-get 127.0.0.1:47912)")
    results+=("$(load uncached-get-sqlite 127.0.0.1:47913)")
done

printf '%s\n' "${results[@]}" >&2
printf '%s\n' "${results[@]}" | python3 scripts/bench-table.py baseline
echo
echo "concurrency=$C requests=$N connections=$K keys=$KEYS rounds=$ROUNDS ($(nproc) cores, client and servers on one machine)"
