#!/usr/bin/env bash
# The soak run: secretd under sustained load for a set time, its resident
# memory printed every 10 s, to show that it stays flat.
#
#   scripts/soak.sh [seconds] [concurrency]      # default: 600 s, 50 streams
#
# The daemon runs as in production: SQLite backend, every call
# authenticated, authorized and audited (to /dev/null, so ten minutes of
# records do not fill the disk; serialization and the writer thread still
# run). The workload keeps the cache churning: 5,000 keys read at random
# against a cache of 1,000 entries that expire after 5 s, and one request in
# 100 a PutSecret (a new version, so the SQLite file and every cache path,
# invalidation included, keep moving).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${1:-600}
C=${2:-50}
KEYS=5000
PORT=47931

. scripts/bench-setup.sh

cat >"$work/soak.yaml" <<YAML
server:
  listen: 127.0.0.1:$PORT
  admin: {listen: 127.0.0.1:$((PORT + 100))}
secret:
  type: jdbc
  jdbc:
    url: sqlite://$work/soak.db
    secret: soak-secret-of-at-least-32-characters
  cache:
    maximum-size: 1000
    expire-after-write: 5s
state:
  url: sqlite://$work/state.db
auth:
  service-accounts:
    - name: soak
      service: WORKER
      permissions: [read, write]
      token-sha256: $TOKEN_HASH
audit:
  sink: file
  path: /dev/null
YAML
SECRETD_LOG=warn "$SECRETD" serve --config "$work/soak.yaml" &
pid=$!
pids+=("$pid")
"$BENCH" wait --addr "127.0.0.1:$PORT"
"$BENCH" seed --addr "127.0.0.1:$PORT" --key-count "$KEYS"
echo "# $(nproc) cores, client and daemon on one machine; secretd $("$SECRETD" --version 2>/dev/null || true)"
"$BENCH" soak --addr "127.0.0.1:$PORT" --pid "$pid" --seconds "$SECONDS_TO_RUN" --concurrency "$C" \
    --key-count "$KEYS" --write-one-in 100
