#!/usr/bin/env bash
# PostgreSQL and Redis on 127.0.0.1 for the tests that need them (scaled-out mode, the audit chain
# on PostgreSQL, shared sign-in counters): started when they do not answer, installed with apt-get
# (as root) when they are missing. PostgreSQL trusts local TCP connections of the `postgres` role.
set -euo pipefail

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
install() {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

if ! answers 5432; then
    command -v pg_ctlcluster >/dev/null || install postgresql
    version=$(ls /etc/postgresql | sort -V | tail -1)
    hba=/etc/postgresql/$version/main/pg_hba.conf
    if ! grep -q "^host all all 127.0.0.1/32 trust" "$hba"; then
        { echo "host all all 127.0.0.1/32 trust"; cat "$hba"; } > "$hba.new" && mv "$hba.new" "$hba"
        chown postgres:postgres "$hba"
    fi
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || pg_ctlcluster "$version" main start
    for _ in $(seq 1 60); do answers 5432 && break; sleep 0.5; done
    answers 5432 || { echo "PostgreSQL did not start" >&2; exit 1; }
    echo "PostgreSQL $version started on 127.0.0.1:5432"
fi

if ! answers 6379; then
    command -v redis-server >/dev/null || install redis-server
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    for _ in $(seq 1 60); do answers 6379 && break; sleep 0.5; done
    answers 6379 || { echo "Redis did not start" >&2; exit 1; }
    echo "Redis started on 127.0.0.1:6379"
fi
