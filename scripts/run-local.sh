#!/usr/bin/env bash
# Runs surge on this machine: Redis and PostgreSQL 15 with their data in
# .data/, then surge-api and two surge-worker processes from build/release.
# `make run` calls it after `make deps all`. Ctrl-C stops everything it started.
#
# Everything listens on 127.0.0.1 only. Ports and folders can be changed:
#   SURGE_LOCAL_REDIS_PORT (6379)  SURGE_LOCAL_PG_PORT (5432)
#   SURGE_LOCAL_API_PORT (8080)    SURGE_LOCAL_ADMIN_PORT (9090: api; +1, +2: workers)
#   SURGE_LOCAL_DATA_DIR (.data)   SURGE_LOCAL_BIN_DIR (build/release)
#   SURGE_LOCAL_PG_BIN (/usr/lib/postgresql/15/bin)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=${SURGE_LOCAL_DATA_DIR:-$ROOT/.data}
BIN=${SURGE_LOCAL_BIN_DIR:-$ROOT/build/release}
PG_BIN=${SURGE_LOCAL_PG_BIN:-/usr/lib/postgresql/15/bin}
REDIS_PORT=${SURGE_LOCAL_REDIS_PORT:-6379}
PG_PORT=${SURGE_LOCAL_PG_PORT:-5432}
API_PORT=${SURGE_LOCAL_API_PORT:-8080}
ADMIN_PORT=${SURGE_LOCAL_ADMIN_PORT:-9090}
HOST=127.0.0.1

say() { printf 'run-local: %s\n' "$*"; }
die() { printf 'run-local: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- checks

for v in REDIS_PORT PG_PORT API_PORT ADMIN_PORT; do
    [[ ${!v} =~ ^[0-9]+$ ]] && ((${!v} >= 1 && ${!v} <= 65533)) ||
        die "SURGE_LOCAL_$v=${!v} is not a port number"
done
W1_PORT=$((ADMIN_PORT + 1))
W2_PORT=$((ADMIN_PORT + 2))

for p in "$BIN/surge-api" "$BIN/surge-worker"; do
    [[ -x $p ]] || die "$p is missing: run \`make\` first"
done
for p in redis-server redis-cli psql; do
    command -v "$p" >/dev/null || die "$p is missing: run \`make deps\` (scripts/install-deps.sh run)"
done
for p in initdb pg_ctl postgres; do
    [[ -x $PG_BIN/$p ]] || die "$PG_BIN/$p is missing: PostgreSQL 15 is needed (\`make deps\`)"
done

# port_taken PORT: true when something accepts connections on 127.0.0.1:PORT.
port_taken() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

taken=()
for entry in "Redis:$REDIS_PORT" "PostgreSQL:$PG_PORT" "surge-api:$API_PORT" \
             "surge-api admin:$ADMIN_PORT" "worker 1 admin:$W1_PORT" "worker 2 admin:$W2_PORT"; do
    port_taken "${entry##*:}" && taken+=("port ${entry##*:} (for ${entry%:*})")
done
if ((${#taken[@]})); then
    for t in "${taken[@]}"; do echo "run-local: error: $t is already taken on $HOST" >&2; done
    echo "run-local: stop what listens there, or choose other ports with SURGE_LOCAL_*_PORT" \
         "(see the top of $0)" >&2
    exit 1
fi

# PostgreSQL refuses to run as root: then it runs as `postgres`.
if ((EUID == 0)); then
    id postgres >/dev/null 2>&1 || die "user postgres is missing (the postgresql package creates it)"
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi

# ---------------------------------------------------------------- folders

mkdir -p "$DATA" "$DATA/redis" "$DATA/postgres" "$DATA/run" "$DATA/logs"
DATA=$(cd "$DATA" && pwd)
if ((EUID == 0)); then
    chown postgres: "$DATA/postgres" "$DATA/run"
    chmod 700 "$DATA/postgres"
    touch "$DATA/logs/postgres.log"
    chown postgres: "$DATA/logs/postgres.log"
    as_pg test -x "$DATA/postgres" -a -w "$DATA/run" ||
        die "user postgres cannot reach $DATA (a parent folder is not searchable by others);" \
            "choose another SURGE_LOCAL_DATA_DIR"
fi
if ((${#DATA} > 80)); then
    die "$DATA is too long a path for PostgreSQL's unix socket; choose a shorter SURGE_LOCAL_DATA_DIR"
fi

# ---------------------------------------------------------------- cleanup

PIDS=() # redis, surge-api, the workers, in the order they started
NAMES=()
PG_STARTED=0
STOPPING=0

# stop_pids INDEX...: SIGTERM to each, then wait for them (SIGKILL after 40 s).
stop_pids() {
    local i n
    for i in "$@"; do kill -TERM "${PIDS[i]}" 2>/dev/null || true; done
    for i in "$@"; do
        n=0
        while kill -0 "${PIDS[i]}" 2>/dev/null && ((n < 400)); do
            sleep 0.1
            n=$((n + 1))
        done
        if kill -0 "${PIDS[i]}" 2>/dev/null; then
            say "${NAMES[i]} (pid ${PIDS[i]}) did not stop in 40 s: killing it"
            kill -KILL "${PIDS[i]}" 2>/dev/null || true
        fi
        wait "${PIDS[i]}" 2>/dev/null || true
    done
}

# Stops surge first, while Redis and PostgreSQL can still take the last
# results, then Redis, then PostgreSQL.
cleanup() {
    local code=$?
    if ((STOPPING)); then return; fi
    STOPPING=1
    trap '' INT TERM
    echo
    say "stopping"
    local i surge=()
    for i in "${!PIDS[@]}"; do
        if [[ ${NAMES[i]} != redis ]]; then surge+=("$i"); fi
    done
    if ((${#surge[@]})); then stop_pids "${surge[@]}"; fi
    for i in "${!PIDS[@]}"; do
        if [[ ${NAMES[i]} == redis ]]; then stop_pids "$i"; fi
    done
    if ((PG_STARTED)); then
        as_pg "$PG_BIN/pg_ctl" -D "$DATA/postgres" -m fast -w -t 60 stop >/dev/null 2>&1 ||
            say "pg_ctl stop failed: see $DATA/logs/postgres.log"
    fi
    say "stopped; data kept in $DATA"
    exit "$code"
}
trap cleanup EXIT
trap 'exit 0' INT TERM # a requested stop: cleanup runs from the EXIT trap

# fail NAME LOG MESSAGE: show the end of LOG and stop everything.
fail() {
    echo "run-local: error: $1 $3; the end of $2:" >&2
    tail -n 30 "$2" >&2 || true
    exit 1
}

# http_ok PORT PATH: true when GET answers 200 (no curl needed).
http_ok() {
    timeout 2 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        printf "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" "$2" "$0" >&3
        IFS= read -r line <&3
        [[ $line == "HTTP/1."?" 200 "* ]]' "$HOST" "$1" "$2" 2>/dev/null
}

# start NAME LOG CMD...: runs CMD in the background, remembers its pid. The
# previous run's LOG is kept as LOG.prev.
start() {
    local name=$1 log=$2
    shift 2
    if [[ -e $log ]]; then mv -f "$log" "$log.prev"; fi
    "$@" >"$log" 2>&1 &
    PIDS+=($!)
    NAMES+=("$name")
}

# ---------------------------------------------------------------- Redis

say "starting Redis on $HOST:$REDIS_PORT (data in $DATA/redis)"
# In a session of its own: a Ctrl-C on the terminal reaches surge (which
# drains) but not Redis, which must outlive the last results; likewise
# pg_ctl detaches PostgreSQL.
start redis "$DATA/logs/redis.log" setsid redis-server --bind "$HOST" --port "$REDIS_PORT" \
    --dir "$DATA/redis" --appendonly yes --appendfsync always --daemonize no --protected-mode yes
REDIS_PID=${PIDS[-1]}
for ((i = 0; i < 100; i++)); do
    [[ $(redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] && break
    kill -0 "$REDIS_PID" 2>/dev/null || fail redis "$DATA/logs/redis.log" "exited"
    sleep 0.1
done
((i < 100)) || fail redis "$DATA/logs/redis.log" "did not answer PING within 10 s"

# ---------------------------------------------------------------- PostgreSQL

if [[ ! -s $DATA/postgres/PG_VERSION ]]; then
    say "creating a PostgreSQL cluster in $DATA/postgres"
    rm -f "$DATA/postgres-seeded"
    as_pg "$PG_BIN/initdb" -D "$DATA/postgres" -U postgres --auth=trust -E UTF8 --locale=C \
        >"$DATA/logs/initdb.log" 2>&1 || fail initdb "$DATA/logs/initdb.log" "failed"
fi
say "starting PostgreSQL on $HOST:$PG_PORT"
PG_STARTED=1
as_pg "$PG_BIN/pg_ctl" -D "$DATA/postgres" -l "$DATA/logs/postgres.log" -w -t 60 \
    -o "-c listen_addresses=$HOST -p $PG_PORT -k $DATA/run -c timezone=UTC" start \
    >/dev/null 2>&1 || { PG_STARTED=0; fail postgres "$DATA/logs/postgres.log" "did not start"; }

SEEDED=$DATA/postgres-seeded
if [[ ! -e $SEEDED ]]; then
    say "creating role and database surge, loading db/schema.sql and db/seed.sql (100 000 items)"
    {
        psql -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PG_PORT" -U postgres -d postgres <<'SQL'
SELECT 'CREATE ROLE surge LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'surge')
\gexec
SELECT 'CREATE DATABASE surge OWNER surge' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'surge')
\gexec
SQL
        psql -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PG_PORT" -U surge -d surge \
            -f "$ROOT/db/schema.sql" -f "$ROOT/db/seed.sql"
    } >"$DATA/logs/seed.log" 2>&1 || fail seeding "$DATA/logs/seed.log" "failed"
    date -u +%Y-%m-%dT%H:%M:%SZ >"$SEEDED"
else
    say "database already seeded ($SEEDED)"
fi

# ---------------------------------------------------------------- surge

export SURGE_REDIS_URL="redis://$HOST:$REDIS_PORT/0"
export SURGE_PG_DSN="host=$HOST port=$PG_PORT dbname=surge user=surge"
export SURGE_BIND_ADDRESS=$HOST
export SURGE_LOG_FORMAT=text

# wait_ready NAME PID ADMIN_PORT LOG: until /readyz says 200 (it reaches
# Redis, and PostgreSQL for a worker).
wait_ready() {
    local i
    for ((i = 0; i < 200; i++)); do
        http_ok "$3" /readyz && return 0
        kill -0 "$2" 2>/dev/null || fail "$1" "$4" "exited"
        sleep 0.1
    done
    fail "$1" "$4" "not ready (/readyz on port $3) within 20 s"
}

say "starting surge-api on $HOST:$API_PORT (admin $ADMIN_PORT)"
SURGE_HTTP_PORT=$API_PORT SURGE_ADMIN_PORT=$ADMIN_PORT \
    start surge-api "$DATA/logs/api.log" "$BIN/surge-api"
wait_ready surge-api "${PIDS[-1]}" "$ADMIN_PORT" "$DATA/logs/api.log"

n=0
for port in "$W1_PORT" "$W2_PORT"; do
    n=$((n + 1))
    say "starting surge-worker $n (admin $port)"
    SURGE_ADMIN_PORT=$port start "surge-worker $n" "$DATA/logs/worker-$n.log" "$BIN/surge-worker"
    wait_ready "surge-worker $n" "${PIDS[-1]}" "$port" "$DATA/logs/worker-$n.log"
done

cat <<EOF

surge is running. Logs: $DATA/logs/   Press Ctrl-C to stop everything.

  # a read job (one SELECT on the items table) and a burn job (CPU for 30 s)
  curl -si -X POST http://$HOST:$API_PORT/jobs/read -H 'Content-Type: application/json' -d '{"item_id":42}'
  curl -si -X POST http://$HOST:$API_PORT/jobs/burn -H 'Content-Type: application/json' -d '{"seconds":30}'
  curl -si -X POST http://$HOST:$API_PORT/jobs -H 'Content-Type: application/json' -d '{"type":"read","params":{"item_id":7}}'

  # a job's state (ID from the answers above)
  curl -s http://$HOST:$API_PORT/jobs/ID

  # what Redis holds: the ids waiting on the queue of each type, a job
  redis-cli -h $HOST -p $REDIS_PORT LLEN surge:queue:read
  redis-cli -h $HOST -p $REDIS_PORT LLEN surge:queue:burn
  redis-cli -h $HOST -p $REDIS_PORT HGETALL surge:job:ID

  # readiness and metrics of the api and of each worker
  curl -s http://$HOST:$ADMIN_PORT/readyz; curl -s http://$HOST:$W1_PORT/readyz; curl -s http://$HOST:$W2_PORT/readyz
  curl -s http://$HOST:$ADMIN_PORT/metrics | grep ^surge_

  # the database
  psql -h $HOST -p $PG_PORT -U surge -d surge -c 'SELECT * FROM items WHERE id = 42'

EOF

# Wait until Ctrl-C, or until one of the processes stops by itself.
while :; do
    code=0
    wait -n "${PIDS[@]}" 2>/dev/null || code=$?
    for i in "${!PIDS[@]}"; do
        if ! kill -0 "${PIDS[i]}" 2>/dev/null; then
            case ${NAMES[i]} in
                redis) log=$DATA/logs/redis.log ;;
                surge-api) log=$DATA/logs/api.log ;;
                *) log=$DATA/logs/worker-${NAMES[i]##* }.log ;;
            esac
            fail "${NAMES[i]}" "$log" "stopped by itself (exit code $code)"
        fi
    done
done
