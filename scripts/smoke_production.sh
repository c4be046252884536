#!/usr/bin/env bash
# Production smoke: the docker-compose commands, run directly on this machine.
#
# nginx (proxy, deploy/nginx.py), gunicorn (web), `celery worker` and `celery
# beat` start exactly as docker-compose.yml starts them, against the real
# PostgreSQL on 127.0.0.1 (a throwaway database) and a Redis server of the
# smoke's own (redis-server on a free loopback port, nothing saved), with the
# insight job every 10 s.  Everything goes through nginx, as in production.
# Then: migrate, create an API key, post a week of a simulated app's events
# through the real SDK (scripts/seed.py, insights left to the job), wait until
# beat + worker have computed all four insight kinds (GET /insights/daily),
# check /health reports the broker ok, run compose's healthchecks for web,
# proxy, worker and beat, check nginx's 5 MiB cap, and stop everything.
# Exits non-zero on any failure; bounded to SMOKE_TIMEOUT seconds; every
# process it started is stopped and the database dropped on exit.  No shared
# Redis is touched: its data lives and dies with the smoke's own server.
#
# Needs: nginx (Debian: apt-get install nginx) and redis-server on the PATH.
# Settings (environment): SMOKE_PG_URL (server, default
# postgres://postgres@127.0.0.1:5432), SMOKE_TIMEOUT (default 110).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
BIN="$(dirname "$PY")"
PG_URL="${SMOKE_PG_URL:-postgres://postgres@127.0.0.1:5432}"
TIMEOUT="${SMOKE_TIMEOUT:-110}"
DB="llmobserve_smoke_$$"
WORK="$(mktemp -d -t llmobserve-smoke.XXXXXX)"
PIDS=()
REDIS_PID=""
STARTED=$SECONDS

log() { printf '[smoke %3ds] %s\n' "$((SECONDS - STARTED))" "$*"; }
fail() {
    log "FAILED: $*"
    for f in "$WORK"/*.log; do
        [ -f "$f" ] && { echo "----- last lines of $(basename "$f")"; tail -n 25 "$f"; }
    done
    exit 1
}
left() { echo $((TIMEOUT - (SECONDS - STARTED))); }

# Throwaway database, through the project's own driver.
admin() {
    "$PY" - "$@" <<'PYEOF'
import sys
import psycopg

action, pg_url, db = sys.argv[1:4]
with psycopg.connect(pg_url + "/postgres", autocommit=True) as conn:
    if action == "create":
        conn.execute(f'CREATE DATABASE "{db}"')
    else:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
PYEOF
}

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    # Warm shutdown first; anything still there after 20 s is killed.
    for _ in $(seq 1 40); do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.5
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    # The smoke's own Redis last, once nothing uses it (its data goes with it).
    if [ -n "$REDIS_PID" ]; then kill -TERM "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; fi
    admin drop "$PG_URL" "$DB" >/dev/null 2>&1 || log "cleanup: could not drop $DB"
    rm -rf "$WORK"
    if [ "$status" = 0 ]; then log "PASSED"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || fail "nginx is not installed (Debian: apt-get install nginx)"
command -v redis-server >/dev/null 2>&1 || fail "redis-server is not installed (Debian: apt-get install redis-server)"
PORT="$(free_port)"          # nginx, the published service
WEB_PORT="$(free_port)"      # gunicorn behind it
REDIS_PORT="$(free_port)"    # the smoke's own Redis
URL="http://127.0.0.1:$PORT"

# What docker-compose's .env and environment give the three roles.
export DJANGO_SETTINGS_MODULE=llmobserve_site.settings
export DATABASE_URL="$PG_URL/$DB"
export CELERY_BROKER_URL="redis://127.0.0.1:$REDIS_PORT/0"
export SECRET_KEY="smoke-$RANDOM-$RANDOM-$RANDOM"
export DEBUG=0
# A public name first, as a real .env has it: the healthchecks must send a Host Django accepts.
export ALLOWED_HOSTS=observe.example.com,127.0.0.1,localhost
export INSIGHTS_INTERVAL_SECONDS=10
export LLMOBSERVE_VAR_DIR="$WORK/var"
export STATIC_ROOT="$WORK/staticfiles"
export LOG_LEVEL=INFO
export WEB_CONCURRENCY=2
unset OPENAI_API_KEY PINECONE_API_KEY LLMOBSERVE_DISABLED LLMOBSERVE_API_KEY COLLECTOR_URL || true
cd "$ROOT"

log "database $DB, broker $CELERY_BROKER_URL, nginx $URL, gunicorn 127.0.0.1:$WEB_PORT"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
admin create "$PG_URL" "$DB" || fail "cannot create the database"
until "$PY" -c "import redis, sys; redis.Redis(port=$REDIS_PORT, socket_connect_timeout=1).ping()" 2>/dev/null; do
    [ "$(left)" -gt 0 ] || fail "the smoke's redis-server never answered"
    sleep 0.2
done

log "migrate + collectstatic (as the image build and the web container do)"
timeout "$(left)" "$PY" manage.py migrate --noinput >"$WORK/migrate.log" 2>&1 || fail "migrate"
timeout "$(left)" "$PY" manage.py collectstatic --noinput >>"$WORK/migrate.log" 2>&1 || fail "collectstatic"
KEY="$("$PY" manage.py create_api_key --project smoke | tail -n 1)"
[[ "$KEY" == lo_* ]] || fail "create_api_key printed no key"

log "start nginx, gunicorn, celery worker, celery beat (docker-compose.yml's commands)"
"$BIN/gunicorn" -c deploy/gunicorn.conf.py llmobserve_site.wsgi:application --bind "127.0.0.1:$WEB_PORT" >"$WORK/web.log" 2>&1 &
PIDS+=($!)
NGINX_LISTEN="127.0.0.1:$PORT" NGINX_UPSTREAM="127.0.0.1:$WEB_PORT" NGINX_RUN_DIR="$WORK/nginx" \
    "$PY" deploy/nginx.py >"$WORK/nginx.log" 2>&1 &
PIDS+=($!)
"$BIN/celery" -A llmobserve_site worker --loglevel=INFO --concurrency=2 >"$WORK/worker.log" 2>&1 &
PIDS+=($!)
"$BIN/celery" -A llmobserve_site beat --loglevel=INFO --schedule "$WORK/beat-schedule" --max-interval 30 \
    --enable-remote-control >"$WORK/beat.log" 2>&1 &
PIDS+=($!)

alive() { for pid in "${PIDS[@]}" "$REDIS_PID"; do kill -0 "$pid" 2>/dev/null || fail "a process exited early (pid $pid)"; done; }

until curl -fsS "$URL/health" >"$WORK/health.json" 2>/dev/null; do
    alive
    [ "$(left)" -gt 0 ] || fail "web never became healthy"
    sleep 0.5
done
log "health: $(cat "$WORK/health.json")"
grep -q '"broker": *"ok"' "$WORK/health.json" || fail "/health does not report the Redis broker ok"

log "post a week of events through the SDK (insights left to beat + worker)"
# Today needs 12 runs to clear the detectors' minimums; the 7 days before, 2 a day.
timeout "$(left)" "$PY" scripts/seed.py --days 8 --runs-per-day 12 --history-runs-per-day 2 --collector-url "$URL" \
    --api-key "$KEY" --dotenv "$WORK/.env" --skip-insights >"$WORK/seed.log" 2>&1 || fail "seed"
grep -E '^(Produced|Done)' "$WORK/seed.log" | sed 's/^/    /'

log "wait for the periodic job to find all four insight kinds"
kinds=""
while :; do
    alive
    body="$(curl -fsS -H "Authorization: Bearer $KEY" "$URL/insights/daily" || true)"
    kinds="$(printf '%s' "$body" | "$PY" -c 'import json, sys
try:
    print(" ".join(sorted({i["kind"] for i in json.load(sys.stdin)["insights"]})))
except Exception:
    print("")')"
    [ "$kinds" = "model_inefficiency retry_loop section_spike token_bloat" ] && break
    [ "$(left)" -gt 0 ] || fail "insights after ${TIMEOUT}s: '${kinds}'"
    sleep 2
done
log "insights: $kinds"
grep -q "insights.compute_insights_for_project.*succeeded" "$WORK/worker.log" || fail "no insight task succeeded in the worker log"
grep -q "Sending due task compute insights for every project" "$WORK/beat.log" || fail "beat sent no insight job"

curl -fsS "$URL/health" >"$WORK/health.json" || fail "/health"
grep -q '"broker": *"ok"' "$WORK/health.json" || fail "/health broker is not ok at the end"
curl -fsS -o /dev/null "$URL/static/vendor/htmx.min.js" 2>/dev/null || curl -fsS -o /dev/null "$URL/accounts/login/" \
    || fail "the login page is not served"
log "health at the end: $(cat "$WORK/health.json")"

log "docker-compose's healthchecks (web, proxy, worker, beat)"
"$PY" deploy/healthcheck.py "http://127.0.0.1:$WEB_PORT/health" || fail "web healthcheck"
"$PY" deploy/healthcheck.py "$URL/health" || fail "proxy healthcheck"
"$BIN/celery" -A llmobserve_site inspect ping --destination "celery@$(hostname)" --timeout 10 >>"$WORK/ping.log" 2>&1 \
    || fail "worker healthcheck (inspect ping)"
"$BIN/celery" -A llmobserve_site inspect ping --destination "celerybeat@$(hostname)" --timeout 10 >>"$WORK/ping.log" 2>&1 \
    || fail "beat healthcheck (inspect ping)"

log "nginx refuses a body over 5 MiB before gunicorn sees it"
head -c $((5 * 1024 * 1024 + 1)) /dev/zero >"$WORK/big.bin"
code="$(curl -sS -o "$WORK/big.json" -w '%{http_code}' -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    --data-binary @"$WORK/big.bin" "$URL/events")"
[ "$code" = 413 ] && grep -q '"error"' "$WORK/big.json" || fail "a 5 MiB + 1 body got $code: $(head -c 200 "$WORK/big.json")"
