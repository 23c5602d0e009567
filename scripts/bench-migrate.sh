#!/usr/bin/env bash
# How long `secretd migrate` takes for 10,000 secrets: SQLite to SQLite and
# SQLite to OpenBao, first copy and the rerun that finds everything
# present. Starts its own OpenBao (scripts/servers/openbao.sh) and stops it
# by PID at exit. A debug-profile test binary, like the other test-driven
# figures: compare runs with each other, not with a release daemon.
#
#   scripts/bench-migrate.sh
set -euo pipefail
cd "$(dirname "$0")/.."
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true' EXIT
while IFS= read -r line; do
    [ -n "$line" ] || continue
    export "${line?}"
    case $line in SECRETD_TEST_VAULT_PID=*) pid=${line#*=} ;; esac
done <<<"$(scripts/servers/openbao.sh)"
cargo test -q -p secretd --test migrate -- --ignored --nocapture bench_10000_secrets
