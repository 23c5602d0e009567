#!/usr/bin/env bash
# The quick start: builds secretd, runs the local dev instance (SQLite under
# ./data, a generated encryption secret, loopback only), shows a put and a
# get through the CLI, then keeps serving until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
# The dev instance serves SQLite only: leaving out the cloud SDKs makes the
# first build minutes shorter. `cargo build --release` builds every backend.
cargo build --release --bin secretd --no-default-features
bin="${CARGO_TARGET_DIR:-target}/release/secretd"
export SECRETD_ADDR=127.0.0.1:7878

"$bin" serve --data-dir ./data &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null' EXIT INT TERM
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/7878) 2>/dev/null && break; sleep 0.1; done

echo
echo '$ echo -n hunter2 | secretd put -n company.team db/password'
echo -n hunter2 | "$bin" put -n company.team db/password
echo '$ secretd get -n company.team.etl db/password   # inherited from company.team'
"$bin" get -n company.team.etl db/password; echo
echo
echo "secretd is serving on $SECRETD_ADDR (Ctrl-C stops it). Try: $bin list -n company.team"
wait $daemon
