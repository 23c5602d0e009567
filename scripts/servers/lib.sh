# Shared by the scripts that install and start the backend test servers.
# Each server script prints `NAME=value` lines for scripts/test.sh to
# export, and starts its server detached, on a free loopback port, with its
# PID printed so tests can stop and restart it. Logs go to $SERVER_LOG_DIR.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${SECRETD_TEST_VENV:-$ROOT/.venv-test}"
SERVER_LOG_DIR="${SERVER_LOG_DIR:-${TMPDIR:-/tmp}/secretd-test-servers}"
mkdir -p "$SERVER_LOG_DIR"

say() { printf '\033[1m[%s]\033[0m %s\n' "$(basename "$0" .sh)" "$*" >&2; }

# Installs `spec` (pip requirement) into the test virtualenv unless `module`
# (its import name) is already importable at that version.
# The server scripts may run at once; one lock keeps them from creating or
# filling the virtualenv together.
ensure_pip() {
    local spec=$1 dist=${1%%[][=<>]*} want=${1##*==}
    (
        flock 9
        [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" >&2
        local have
        have=$("$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('$dist'))" 2>/dev/null || true)
        if [ "$have" != "$want" ]; then
            say "installing $spec into $VENV"
            "$VENV/bin/pip" install -q --disable-pip-version-check "$spec" >&2
        fi
    ) 9>"${TMPDIR:-/tmp}/secretd-venv-test.lock"
}

# A free loopback port (and, with `pair`, the one above it free too).
free_port() {
    "$VENV/bin/python" - "${1:-}" <<'PY'
import socket, sys
pair = sys.argv[1] == "pair"
for _ in range(200):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    ok = port < 65535
    if ok and pair:
        t = socket.socket()
        try: t.bind(("127.0.0.1", port + 1))
        except OSError: ok = False
        t.close()
    s.close()
    if ok:
        print(port); break
else:
    sys.exit("no free port")
PY
}

# Waits until `url` answers HTTP at all (any status), or fails after ~20 s.
wait_http() {
    local url=$1 pid=$2 log=$3
    for _ in $(seq 200); do
        if ! kill -0 "$pid" 2>/dev/null; then
            say "the server exited; its log ($log):"; tail -n 20 "$log" >&2; return 1
        fi
        curl -s -o /dev/null --max-time 1 "$url" && return 0
        sleep 0.1
    done
    say "no answer from $url; log: $log"; return 1
}
