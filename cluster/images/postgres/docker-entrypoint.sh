#!/usr/bin/env bash
# Entrypoint of the postgres:15.10-bookworm stand-in: the part of the official
# image's interface that k8s/base/postgres relies on (after the reference
# recipe in ../shared/cluster/images/postgres):
#   POSTGRES_USER, POSTGRES_DB, POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE,
#   POSTGRES_INITDB_ARGS, PGDATA; on an empty PGDATA: initdb, then every
#   /docker-entrypoint-initdb.d/*.sql run and *.sh sourced (or run when
#   executable) against a server that listens on its socket only; any UID,
#   the passwd entry faked with nss_wrapper; listen on every address with
#   scram-sha-256 for remote clients. Runs as the pod's non-root user.
set -Eeo pipefail

# file_env VAR [DEFAULT]: VAR from VAR_FILE when that is set.
file_env() {
    local var=$1 file=${1}_FILE def=${2:-}
    if [[ -n ${!file:-} ]]; then
        export "$var"="$(< "${!file}")"
    elif [[ -z ${!var:-} ]]; then
        export "$var"="$def"
    fi
    unset "$file"
}

# initdb asks the passwd database who runs it: a UID without an entry gets one.
fake_passwd() {
    getent passwd "$(id -u)" >/dev/null 2>&1 && return 0
    NSS_WRAPPER_PASSWD=$(mktemp)
    NSS_WRAPPER_GROUP=$(mktemp)
    echo "postgres:x:$(id -u):$(id -g):PostgreSQL:$PGDATA:/bin/false" > "$NSS_WRAPPER_PASSWD"
    echo "postgres:x:$(id -g):" > "$NSS_WRAPPER_GROUP"
    LD_PRELOAD=$(find /usr/lib -name libnss_wrapper.so | head -1)
    export NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP LD_PRELOAD
}

init_database() {
    [[ -n $POSTGRES_PASSWORD ]] || { echo "docker-entrypoint: POSTGRES_PASSWORD is required" >&2; exit 1; }
    fake_passwd
    # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of arguments
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") $POSTGRES_INITDB_ARGS
    unset LD_PRELOAD NSS_WRAPPER_PASSWD NSS_WRAPPER_GROUP
    printf '\nhost all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"

    export PGPASSWORD=$POSTGRES_PASSWORD PGHOST= PGHOSTADDR=
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
    if [[ $POSTGRES_DB != postgres ]]; then
        psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc --dbname postgres \
            -c "CREATE DATABASE \"$POSTGRES_DB\""
    fi
    local f
    for f in /docker-entrypoint-initdb.d/*; do
        case $f in
            *.sh)
                if [[ -x $f ]]; then echo "docker-entrypoint: running $f"; "$f"
                else echo "docker-entrypoint: sourcing $f"; . "$f"; fi ;;
            *.sql)
                echo "docker-entrypoint: running $f"
                psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc \
                    --dbname "$POSTGRES_DB" -f "$f" ;;
            *) [[ -e $f ]] && echo "docker-entrypoint: ignoring $f" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
    unset PGPASSWORD
    echo "docker-entrypoint: PostgreSQL init process complete; ready for start up."
}

if [[ ${1:0:1} == - ]]; then set -- postgres "$@"; fi
if [[ $1 == postgres ]]; then
    file_env POSTGRES_PASSWORD
    export POSTGRES_USER=${POSTGRES_USER:-postgres}
    export POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
    mkdir -p "$PGDATA"
    chmod 700 "$PGDATA" || :
    [[ -s $PGDATA/PG_VERSION ]] || init_database
fi
exec "$@"
