#!/usr/bin/env bash
# A/B of two secretd builds on the hot path: cached GetSecret, every call
# authenticated, authorized, counted and audited to a file, as in
# scripts/bench.sh. Both servers are pinned to core 0 and the load generator
# to core 1; rounds alternate A and B, and the table shows medians.
#
#   scripts/bench-ab.sh OLD_BINARY NEW_BINARY [concurrency] [requests] [connections] [rounds]
#
# Build the old one from a worktree of the commit before the change, e.g.
#   git worktree add /tmp/old <commit> && (cd /tmp/old && cargo build --release -p secretd --no-default-features)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,11p' "$0"; exit 2; }
A=$(realpath "$1")
B=$(realpath "$2")
C=${3:-50}
N=${4:-200000}
K=${5:-4}
ROUNDS=${6:-5}
KEYS=100

. scripts/bench-setup.sh

if [ "$(nproc)" -ge 2 ]; then
    PIN="taskset -c 0"
    LOAD_PIN="taskset -c 1"
fi
daemon 47921 true "$A"
daemon 47922 true "$B"

results=()
for _ in $(seq "$ROUNDS"); do
    results+=("$(load a-old 127.0.0.1:47921)")
    results+=("$(load b-new 127.0.0.1:47922)")
done
printf '%s\n' "${results[@]}" >&2
printf '%s\n' "${results[@]}" | python3 scripts/bench-table.py a-old
echo
echo "A=$A B=$B concurrency=$C requests=$N connections=$K keys=$KEYS rounds=$ROUNDS (servers on core 0, generator on core 1)"
