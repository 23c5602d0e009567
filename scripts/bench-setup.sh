# Sourced by scripts/bench.sh, bench-stale.sh and soak.sh: builds the
# release binaries and prepares what every run needs. Sets SECRETD, BENCH,
# work (a temporary directory), SECRETD_TOKEN and TOKEN_HASH, and pids
# (servers started by the caller, stopped by PID at exit with the directory
# removed). Defines `load LABEL ADDR`: one measured run with the caller's
# C, N, K and KEYS, as a JSON line for scripts/bench-table.py.

# The measured path (authentication, policy, cache, SQLite, metrics, audit)
# does not depend on the cloud SDKs; leaving them out keeps the release
# build short.
cargo build --release -q -p secretd --no-default-features -p secretd-bench
SECRETD="${CARGO_TARGET_DIR:-target}/release/secretd"
BENCH="${CARGO_TARGET_DIR:-target}/release/secretd-bench"
work=$(mktemp -d)
# secretd authenticates every call: a token for the generator, declared in
# the config by its hash, as a stateless sidecar would.
export SECRETD_TOKEN="sdt_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
TOKEN_HASH=$(printf '%s' "$SECRETD_TOKEN" | "$SECRETD" token hash)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

load() { # label addr
    "$BENCH" load --addr "$2" --concurrency "$C" --requests "$N" --connections "$K" \
        --key-count "$KEYS" --label "$1" --json
}
