#!/usr/bin/env bash
# Production smoke: the docker-compose commands, run directly on this machine.
#
# gunicorn (web), `celery worker` and `celery beat` start exactly as
# docker-compose.yml starts them, against the real PostgreSQL (a throwaway
# database) and Redis (a dedicated db number) on 127.0.0.1, with the insight
# job every 10 s.  Then: migrate, create an API key, post a week of a
# simulated app's events through the real SDK (scripts/seed.py, insights left
# to the job), wait until beat + worker have computed all four insight kinds
# (GET /insights/daily), check /health reports the broker ok, and stop
# everything.  Exits non-zero on any failure; bounded to SMOKE_TIMEOUT seconds;
# every process it started is stopped and the database dropped on exit.
#
# Settings (environment): SMOKE_PG_URL (server, default
# postgres://postgres@127.0.0.1:5432), SMOKE_REDIS_URL (default
# redis://127.0.0.1:6379), SMOKE_REDIS_DB (default 14), SMOKE_TIMEOUT (default 110).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
BIN="$(dirname "$PY")"
PG_URL="${SMOKE_PG_URL:-postgres://postgres@127.0.0.1:5432}"
REDIS_URL="${SMOKE_REDIS_URL:-redis://127.0.0.1:6379}"
REDIS_DB="${SMOKE_REDIS_DB:-14}"
TIMEOUT="${SMOKE_TIMEOUT:-110}"
DB="llmobserve_smoke_$$"
WORK="$(mktemp -d -t llmobserve-smoke.XXXXXX)"
PIDS=()
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

# Throwaway database and Redis db, through the project's own drivers.
admin() {
    "$PY" - "$@" <<'PYEOF'
import sys
import psycopg
import redis

action, pg_url, db, redis_url, redis_db = sys.argv[1:6]
if action == "create":
    with psycopg.connect(pg_url + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    redis.Redis.from_url(f"{redis_url}/{redis_db}").flushdb()
else:
    with psycopg.connect(pg_url + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    redis.Redis.from_url(f"{redis_url}/{redis_db}").flushdb()
PYEOF
}

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
    admin drop "$PG_URL" "$DB" "$REDIS_URL" "$REDIS_DB" >/dev/null 2>&1 || log "cleanup: could not drop $DB or flush Redis db $REDIS_DB"
    rm -rf "$WORK"
    if [ "$status" = 0 ]; then log "PASSED"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:$PORT"

# What docker-compose's .env and environment give the three roles.
export DJANGO_SETTINGS_MODULE=llmobserve_site.settings
export DATABASE_URL="$PG_URL/$DB"
export CELERY_BROKER_URL="$REDIS_URL/$REDIS_DB"
export SECRET_KEY="smoke-$RANDOM-$RANDOM-$RANDOM"
export DEBUG=0
export ALLOWED_HOSTS=127.0.0.1,localhost
export INSIGHTS_INTERVAL_SECONDS=10
export LLMOBSERVE_VAR_DIR="$WORK/var"
export STATIC_ROOT="$WORK/staticfiles"
export LOG_LEVEL=INFO
export WEB_CONCURRENCY=2
unset OPENAI_API_KEY PINECONE_API_KEY LLMOBSERVE_DISABLED LLMOBSERVE_API_KEY COLLECTOR_URL || true
cd "$ROOT"

log "database $DB, broker $CELERY_BROKER_URL, web $URL"
admin create "$PG_URL" "$DB" "$REDIS_URL" "$REDIS_DB" || fail "cannot create the database / reach Redis"

log "migrate + collectstatic (as the image build and the web container do)"
timeout "$(left)" "$PY" manage.py migrate --noinput >"$WORK/migrate.log" 2>&1 || fail "migrate"
timeout "$(left)" "$PY" manage.py collectstatic --noinput >>"$WORK/migrate.log" 2>&1 || fail "collectstatic"
KEY="$("$PY" manage.py create_api_key --project smoke | tail -n 1)"
[[ "$KEY" == lo_* ]] || fail "create_api_key printed no key"

log "start gunicorn, celery worker, celery beat"
"$BIN/gunicorn" llmobserve_site.wsgi:application --bind "127.0.0.1:$PORT" --access-logfile - >"$WORK/web.log" 2>&1 &
PIDS+=($!)
"$BIN/celery" -A llmobserve_site worker --loglevel=INFO --concurrency=2 >"$WORK/worker.log" 2>&1 &
PIDS+=($!)
"$BIN/celery" -A llmobserve_site beat --loglevel=INFO --schedule "$WORK/beat-schedule" >"$WORK/beat.log" 2>&1 &
PIDS+=($!)

alive() { for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || fail "a process exited early (pid $pid)"; done; }

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
