#!/usr/bin/env bash
# Generates the Python gRPC stubs for secretd from proto/secretd/v1/broker.proto.
#
#   examples/python/generate.sh [OUT]     # OUT defaults to examples/python/gen (git-ignored)
#
# Uses $PYTHON (default python3), which needs grpcio-tools (requirements.txt).
# The stubs land in OUT/secretd/v1/broker_pb2{,_grpc}.py; worker_client.py
# finds them through SECRETD_PY_STUBS (default: gen beside it). Generated code
# is never committed: it is regenerated from the proto, the one contract.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${1:-$root/examples/python/gen}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$root"
# grpc_tools.protoc adds the well-known types (google/protobuf/timestamp.proto) itself.
"${PYTHON:-python3}" -m grpc_tools.protoc -I proto --python_out="$out" --grpc_python_out="$out" \
    proto/secretd/v1/broker.proto
echo "$out"
