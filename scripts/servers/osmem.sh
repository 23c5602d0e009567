#!/usr/bin/env bash
# Installs osmem-server (PyPI), an in-memory server speaking the
# Elasticsearch / OpenSearch HTTP API, and starts it on a free loopback
# port. It makes writes visible to search at once, so the backend's unit
# tests check separately that writes ask for a refresh.
#
# Prints SECRETD_TEST_ELASTICSEARCH_URL and SECRETD_TEST_ELASTICSEARCH_PID
# for scripts/test.sh.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ensure_pip osmem-server==0.1.6
binary="$("$VENV/bin/python" -c 'import osmem_server; print(osmem_server.resolve_binary())')"
[ -x "$binary" ] || { say "osmem-server binary not found at $binary"; exit 1; }
port=$(free_port)
log="$SERVER_LOG_DIR/osmem-$port.log"
setsid "$binary" -addr "127.0.0.1:$port" -no-stdin-watch -no-ja </dev/null >"$log" 2>&1 &
pid=$!
wait_http "http://127.0.0.1:$port/" "$pid" "$log"
say "osmem-server on 127.0.0.1:$port (pid $pid, log $log)"
echo "SECRETD_TEST_ELASTICSEARCH_URL=http://127.0.0.1:$port"
echo "SECRETD_TEST_ELASTICSEARCH_PID=$pid"
