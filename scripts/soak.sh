#!/usr/bin/env bash
# Soak test of the embedded default: the `make run` stack (scripts/dev.py: SQLite, the
# filesystem broker, gunicorn + Celery worker + beat, supervised) in a fresh folder, driven
# for SOAK_MINUTES (default 120) by scripts/soak.py with a steady stream of evaluation runs,
# attestations and page views through its API on 127.0.0.1. Fails unless: 0 supervisor
# restarts (no crash), every run completed exactly once with exactly its samples, every
# attestation PDF arrived, no 5xx, the audit chain verifies, no CRITICAL line in the console.
#
#   scripts/soak.sh                      # 2 hours
#   SOAK_MINUTES=10 scripts/soak.sh      # the short version
#
# Other knobs: SOAK_PORT (8799), SOAK_DIR (a new /tmp/soak.* folder: console, logs, database),
# SOAK_FINISH_SECONDS (300: how long the work in flight may take to finish at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES="${SOAK_MINUTES:-120}"
PORT="${SOAK_PORT:-8799}"
OUT="${SOAK_DIR:-$(mktemp -d /tmp/soak.XXXXXX)}"
PY="${PYTHON:-.venv/bin/python}"
mkdir -p "$OUT"

# A fresh make-run world of its own: never the developer's var/ or a configured server.
unset DATABASE_URL CELERY_BROKER_URL DEBUG
export DJANGO_SETTINGS_MODULE=config.settings VAR_DIR="$OUT/var" STATIC_ROOT="$OUT/static"

echo "[soak] ${MINUTES} min on http://127.0.0.1:${PORT}/, output in ${OUT}"
"$PY" scripts/dev.py --host 127.0.0.1 --port "$PORT" >"$OUT/console.log" 2>&1 &
DEV=$!
stop_stack() {
    if kill -0 "$DEV" 2>/dev/null; then
        kill -INT "$DEV" 2>/dev/null || true
        wait "$DEV" 2>/dev/null || true
    fi
}
trap stop_stack EXIT

for _ in $(seq 600); do
    if ! kill -0 "$DEV" 2>/dev/null; then
        echo "[soak] the stack did not start:"; tail -40 "$OUT/console.log"; exit 1
    fi
    curl -fs "http://127.0.0.1:${PORT}/healthz" >/dev/null 2>&1 && break
    sleep 0.5
done

set +e
SOAK_BASE="http://127.0.0.1:${PORT}" SOAK_MINUTES="$MINUTES" \
    SOAK_SUPERVISOR_STATE="$VAR_DIR/log/supervisor.json" \
    "$PY" scripts/soak.py 2>&1 | tee "$OUT/soak.log"
status=${PIPESTATUS[0]}
set -e

stop_stack
trap - EXIT
if grep -E "CRITICAL|Unrecoverable error" "$OUT/console.log" >/dev/null; then
    echo "[soak] FAIL: the console has CRITICAL lines:"
    grep -E "CRITICAL|Unrecoverable error" "$OUT/console.log" | head -5
    status=1
fi
grep -h "restarts during this run" "$OUT/console.log" || true
echo "[soak] $([ "$status" -eq 0 ] && echo PASS || echo FAIL) (console, logs and database in ${OUT})"
exit "$status"
