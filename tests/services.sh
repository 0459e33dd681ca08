#!/usr/bin/env bash
# PostgreSQL and Redis on 127.0.0.1 for the tests that need them (scaled-out mode, the audit chain
# on PostgreSQL, shared sign-in counters): started when they do not answer, installed with apt-get
# (as root) when they are missing. PostgreSQL trusts local TCP connections of the `postgres` role.
# A server that already answers is left as it is.
set -euo pipefail

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
install() {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}
wait_for() {  # port, name
    for _ in $(seq 1 60); do answers "$1" && return 0; sleep 0.5; done
    echo "$2 did not start on 127.0.0.1:$1" >&2
    exit 1
}
newest_cluster() {  # the version of the newest PostgreSQL cluster named main, if any
    local config
    config=$(compgen -G "/etc/postgresql/*/main/postgresql.conf" | sort -V | tail -1 || true)
    [ -n "$config" ] && basename "$(dirname "$(dirname "$config")")"
}

if ! answers 5432; then
    version=$(newest_cluster || true)
    if [ -z "$version" ]; then
        install postgresql  # its install makes the cluster `main`, and may start it
        version=$(newest_cluster) || { echo "installing postgresql made no cluster" >&2; exit 1; }
    fi
    hba=/etc/postgresql/$version/main/pg_hba.conf
    if ! grep -q "^host all all 127.0.0.1/32 trust" "$hba"; then
        { echo "host all all 127.0.0.1/32 trust"; cat "$hba"; } > "$hba.new"
        chown --reference="$hba" "$hba.new" && chmod --reference="$hba" "$hba.new" && mv "$hba.new" "$hba"
    fi
    if pg_ctlcluster "$version" main status >/dev/null 2>&1; then
        pg_ctlcluster "$version" main reload  # running: it reads the new pg_hba.conf
    else
        pg_ctlcluster --skip-systemctl-redirect "$version" main start || pg_ctlcluster "$version" main start
    fi
    wait_for 5432 PostgreSQL
    echo "PostgreSQL $version started on 127.0.0.1:5432"
fi

if ! answers 6379; then
    command -v redis-server >/dev/null || install redis-server  # which may start it
    answers 6379 || redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    wait_for 6379 Redis
    echo "Redis started on 127.0.0.1:6379"
fi
