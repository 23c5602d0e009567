#!/usr/bin/env bash
# Installs what the Python client example needs (examples/python/requirements.txt:
# grpcio, grpcio-tools, protobuf) and what the Key Vault test server is held
# to (backends/azure-test-server/python/requirements.txt: Microsoft's
# azure-keyvault-secrets SDK) into the test virtualenv .venv-test, and
# prints the interpreter for tests/python_client.rs and
# backends/azure-test-server/tests/python_sdk.rs:
#
#   SECRETD_TEST_PYTHON=/.../.venv-test/bin/python
#
# on stdout (everything else goes to stderr), for scripts/test.sh to export.
set -euo pipefail
. "$(dirname "$0")/servers/lib.sh"

# ensure_pip holds the virtualenv lock, so this can run beside the server scripts.
while read -r spec; do
    case $spec in '' | '#'*) continue ;; esac
    ensure_pip "$spec"
done < <(sed 's/[[:space:]]*#.*//' "$ROOT/examples/python/requirements.txt" \
    "$ROOT/backends/azure-test-server/python/requirements.txt")
"$VENV/bin/python" -c 'import grpc, grpc_tools.protoc, google.protobuf, azure.core, azure.keyvault.secrets' >&2
echo "SECRETD_TEST_PYTHON=$VENV/bin/python"
