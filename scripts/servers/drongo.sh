#!/usr/bin/env bash
# Installs drongo (PyPI), an in-memory server speaking Google Secret
# Manager's REST API (v1), and starts it on a free loopback port. It takes
# any project and ignores authentication (the store uses anonymous
# credentials with an endpoint override), and it ignores the list filter and
# paging, so the store's client-side checks are what the tests exercise.
#
# `drongo` is a pip console script that runs the server in the same Python
# process (no exec, no child), so the PID printed is the server's.
#
# Prints SECRETD_TEST_GCP_ENDPOINT and SECRETD_TEST_GCP_PID for
# scripts/test.sh.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ensure_pip drongo==0.8.0
port=$(free_port)
log="$SERVER_LOG_DIR/drongo-$port.log"
setsid "$VENV/bin/drongo" server --host 127.0.0.1 --port "$port" </dev/null >"$log" 2>&1 &
pid=$!
wait_http "http://127.0.0.1:$port/drongo/health" "$pid" "$log"
say "drongo on 127.0.0.1:$port (pid $pid, log $log)"
echo "SECRETD_TEST_GCP_ENDPOINT=http://127.0.0.1:$port"
echo "SECRETD_TEST_GCP_PID=$pid"
