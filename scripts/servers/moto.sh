#!/usr/bin/env bash
# Installs moto's server (PyPI moto[server]), which speaks the AWS Secrets
# Manager API, and starts it on a free loopback port. It accepts any
# credentials; requests must be SigV4-signed (unsigned ones are taken for
# S3), which the SDK does.
#
# Prints SECRETD_TEST_AWS_ENDPOINT and SECRETD_TEST_AWS_PID for
# scripts/test.sh, and SECRETD_TEST_MOTO (the moto_server binary) for the
# tests that start, kill and restart a server of their own.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ensure_pip 'moto[server]==5.2.5'
port=$(free_port)
log="$SERVER_LOG_DIR/moto-$port.log"
# The request recorder (/moto-api/recorder/*, used by the STS tests) writes
# beside the log, not into the working directory.
MOTO_RECORDER_FILEPATH="$SERVER_LOG_DIR/moto-$port.recording" setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" </dev/null >"$log" 2>&1 &
pid=$!
wait_http "http://127.0.0.1:$port/moto-api/" "$pid" "$log"
say "moto on 127.0.0.1:$port (pid $pid, log $log)"
echo "SECRETD_TEST_AWS_ENDPOINT=http://127.0.0.1:$port"
echo "SECRETD_TEST_AWS_PID=$pid"
echo "SECRETD_TEST_MOTO=$VENV/bin/moto_server"
