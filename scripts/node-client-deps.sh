#!/usr/bin/env bash
# Installs what the Node client example needs (examples/node/package-lock.json:
# @grpc/grpc-js and @grpc/proto-loader, pinned) into examples/node/node_modules
# (git-ignored), and prints the interpreter for tests/python_client.rs:
#
#   SECRETD_TEST_NODE=/usr/bin/node
#
# on stdout (everything else goes to stderr), for scripts/test.sh to export.
# Needs node (18.3 or later) and npm.
set -euo pipefail
dir="$(cd "$(dirname "$0")/../examples/node" && pwd)"
node=$(command -v node) || { echo "node-client-deps: node is not installed" >&2; exit 1; }
command -v npm >/dev/null || { echo "node-client-deps: npm is not installed" >&2; exit 1; }
# npm ci installs exactly the lock file; skip it when that is already there.
if ! (cd "$dir" && "$node" -e 'require("@grpc/grpc-js"); require("@grpc/proto-loader")' 2>/dev/null) \
    || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    echo "[node-client-deps] npm ci in $dir" >&2
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
(cd "$dir" && "$node" -e 'require("@grpc/grpc-js"); require("@grpc/proto-loader")') >&2
echo "SECRETD_TEST_NODE=$node"
