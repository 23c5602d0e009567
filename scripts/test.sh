#!/usr/bin/env bash
# Runs every secretd test: unit tests; the conformance suite on the memory
# store, SQLite, PostgreSQL, MariaDB, OpenBao (Vault's API), moto (AWS
# Secrets Manager's API), osmem-server (the Elasticsearch/OpenSearch API),
# drongo (Google Secret Manager's REST API) and the in-process Key Vault test
# server; the end-to-end tests that start the real daemon; the deployment
# manifests; and the worker client examples (Rust, Python, Node). It
# installs and starts the servers the tests need (the Python ones into
# .venv-test, on free loopback ports, stopped by PID at the end), and gives
# each run its own scratch databases, dropped at the end.
#
#   scripts/test.sh [extra cargo test args]
#
# With CI=true a test whose server is missing fails; it never skips.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[test.sh]\033[0m %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
    log "installing $*"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
    if ! command -v pg_isready >/dev/null || ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
        apt_install postgresql postgresql-client
        # The tests connect over TCP as `postgres` without a password.
        for hba in /etc/postgresql/*/main/pg_hba.conf; do
            as_root sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/' "$hba"
        done
    fi
    if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
        log "starting PostgreSQL"
        as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
    fi
    for _ in $(seq 50); do pg_isready -h 127.0.0.1 -p 5432 -q && return 0; sleep 0.2; done
    log "PostgreSQL did not become ready"; return 1
}

ensure_mariadb() {
    local fresh=
    if ! command -v mariadb >/dev/null; then
        apt_install mariadb-server mariadb-client
        fresh=1
    fi
    if ! mariadb -h 127.0.0.1 -P 3306 -u root -e 'select 1' >/dev/null 2>&1; then
        log "starting MariaDB"
        as_root mkdir -p /run/mysqld && as_root chown mysql: /run/mysqld 2>/dev/null || true
        as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
    fi
    for _ in $(seq 100); do
        mariadb -h 127.0.0.1 -P 3306 -u root -e 'select 1' >/dev/null 2>&1 && return 0
        # A fresh Debian install lets root in through the socket only: the
        # tests connect over TCP as root without a password.
        if [ -n "$fresh" ] && as_root mariadb -u root -e \
            "ALTER USER root@localhost IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket" 2>/dev/null; then
            fresh=
        fi
        sleep 0.2
    done
    log "MariaDB did not become ready"; return 1
}

ensure_tools() {
    local missing=()
    command -v curl >/dev/null || missing+=(curl)
    command -v flock >/dev/null || missing+=(util-linux)
    command -v openssl >/dev/null || missing+=(openssl)
    python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
    command -v node >/dev/null || missing+=(nodejs)
    command -v npm >/dev/null || missing+=(npm)
    # tests/files_on_disk.rs holds up chmod with strace to watch the socket appear.
    command -v strace >/dev/null || missing+=(strace)
    if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
}

scratch="secretd_test_$$_${RANDOM}"
server_pids=()
cleanup() {
    psql -h 127.0.0.1 -U postgres -qc "drop database if exists $scratch" >/dev/null 2>&1 || true
    mariadb -h 127.0.0.1 -u root -e "drop database if exists $scratch" >/dev/null 2>&1 || true
    for pid in "${server_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# Starts scripts/servers/NAME.sh and exports what it prints; a server that
# cannot start fails the run.
start_server() {
    local out line
    out=$("scripts/servers/$1.sh") || { log "$1 did not start"; return 1; }
    while IFS= read -r line; do
        [ -n "$line" ] || continue
        export "${line?}"
        case $line in *_PID=*) server_pids+=("${line#*=}") ;; esac
    done <<<"$out"
}

ensure_tools
ensure_postgres
ensure_mariadb
for server in openbao moto osmem drongo; do start_server "$server"; done
# The worker client examples' test needs grpcio (Python) and @grpc/grpc-js
# (Node); the Rust example is run by that test too, and `cargo test` builds
# examples only as test harnesses.
export "$(scripts/python-client-deps.sh)"
export "$(scripts/node-client-deps.sh)"
cargo build --example worker_client
psql -h 127.0.0.1 -U postgres -qc "create database $scratch" >/dev/null
mariadb -h 127.0.0.1 -u root -e "create database $scratch"
export SECRETD_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/$scratch"
export SECRETD_TEST_MYSQL_URL="mysql://root@127.0.0.1:3306/$scratch"
log "scratch databases: $scratch (PostgreSQL and MariaDB)"

cargo test --workspace --all-targets --no-fail-fast "$@"
