#!/usr/bin/env bash
# How long `secretd rekey` takes: seeds COUNT secrets (10,000 by default)
# in a fresh SQLite database under one secret, re-seals them under another,
# and prints the time. A release build, like the daemon operators run.
#
#   scripts/bench-rekey.sh [count] [database-url]
#
# With a URL (an empty PostgreSQL or MariaDB database, say), that database
# is used instead of a fresh SQLite file.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -q -p secretd-sql --example bench_reseal -- "${1:-10000}" ${2:+"$2"}
