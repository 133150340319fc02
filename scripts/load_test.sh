#!/usr/bin/env bash
# Load test: 50 concurrent users (engineers browsing and filing changes through the pages and
# the API, reviewers reviewing, auditors reading the audit log) against gunicorn with a real
# Celery worker and PostgreSQL, all on 127.0.0.1; then `manage.py verify_audit`.
#
#   scripts/load_test.sh [DURATION]        e.g. scripts/load_test.sh 2m  (default 5m)
#
# Environment (all optional):
#   LOAD_DURATION       run time when no argument is given (locust syntax: 90s, 2m, 1h; 5m)
#   LOAD_USERS          concurrent users (50); LOAD_SPAWN_RATE users started per second (2)
#   LOAD_PORT           gunicorn's port on 127.0.0.1 (8091)
#   LOAD_DATABASE_URL   PostgreSQL database, dropped and recreated
#                       (postgres://postgres@127.0.0.1:5432/pcm_load)
#   LOAD_BROKER_URL     Celery broker (redis://127.0.0.1:6379/14 when Redis answers there,
#                       else kombu's filesystem:// transport under LOAD_OUT)
#   WEB_WORKERS, WEB_THREADS   gunicorn processes and threads (3, 4: as docker/compose.yaml)
#   WEB_KEEPALIVE       seconds gunicorn keeps an idle connection (15: longer than a user's
#                       pause, as a proxy in front would; 2 races the clients' reuse)
#   WORKER_CONCURRENCY  Celery worker processes (1)
#   LOAD_OUT            report, logs and locust CSVs (var/load)
#
# Prints the request count, p50/p95 page and API latency and the number of 5xx answers, then
# the audit verification. Exits 0 only when requests were made, none answered 5xx or failed
# to connect, and the audit chain verifies.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python
DURATION=${1:-${LOAD_DURATION:-5m}}
USERS=${LOAD_USERS:-50}
SPAWN_RATE=${LOAD_SPAWN_RATE:-2}
PORT=${LOAD_PORT:-8091}
OUT=${LOAD_OUT:-$ROOT/var/load}
HOST=http://127.0.0.1:$PORT

rm -rf "$OUT"
mkdir -p "$OUT/var"
log() { printf '==> %s\n' "$*"; }

# A production-like process environment, on plain HTTP at 127.0.0.1.
export DJANGO_SETTINGS_MODULE=config.settings
export DEBUG=false SECURE_SSL_REDIRECT=false SECURE_HSTS_SECONDS=0
export SESSION_COOKIE_SECURE=false CSRF_COOKIE_SECURE=false
export ALLOWED_HOSTS=127.0.0.1,localhost
export VAR_DIR=$OUT/var
export LOG_LEVEL=${LOG_LEVEL:-WARNING}
export DATABASE_URL=${LOAD_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/pcm_load}
if [ -z "${LOAD_BROKER_URL:-}" ]; then
  if "$PY" -c 'import redis; redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2).ping()' \
    >/dev/null 2>&1; then
    LOAD_BROKER_URL=redis://127.0.0.1:6379/14
  else
    LOAD_BROKER_URL=filesystem://
  fi
fi
export CELERY_BROKER_URL=$LOAD_BROKER_URL
# This run's own queue: nothing else on the broker takes its evaluation batches.
export EVAL_TASK_QUEUE=load-$$
log "database $DATABASE_URL, broker $CELERY_BROKER_URL, $USERS users for $DURATION on $HOST"

log "fresh database, migrations, demo data"
"$PY" - <<'EOF'
import os
from urllib.parse import urlparse

import psycopg

url = urlparse(os.environ["DATABASE_URL"])
name = url.path.lstrip("/")
with psycopg.connect(url._replace(path="/postgres").geturl(), autocommit=True) as conn:
    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.execute(f'CREATE DATABASE "{name}"')
EOF
"$PY" manage.py migrate --noinput -v0
"$PY" manage.py seed_demo >"$OUT/seed.log" 2>&1

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap cleanup EXIT

log "Celery worker and gunicorn"
"$ROOT/.venv/bin/celery" -A config worker --pool prefork -c "${WORKER_CONCURRENCY:-1}" \
  -Q "$EVAL_TASK_QUEUE,celery" -n "load-$$@%h" --without-gossip --without-mingle \
  -l WARNING >"$OUT/worker.log" 2>&1 &
PIDS+=($!)
"$ROOT/.venv/bin/gunicorn" config.wsgi:application --bind "127.0.0.1:$PORT" \
  --workers "${WEB_WORKERS:-3}" --threads "${WEB_THREADS:-4}" --timeout 120 \
  --keep-alive "${WEB_KEEPALIVE:-15}" \
  --access-logfile "$OUT/access.log" --error-logfile "$OUT/gunicorn.log" &
PIDS+=($!)
"$PY" - "$HOST/healthz" <<'EOF'
import sys
import time
import urllib.request

for _ in range(120):
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
            if response.status == 200:
                sys.exit(0)
    except OSError:
        time.sleep(0.5)
sys.exit("gunicorn did not answer /healthz within 60 s")
EOF

log "locust: $USERS users for $DURATION"
locust_rc=0
LOAD_REPORT=$OUT/report.json "$ROOT/.venv/bin/locust" -f tests/load/locustfile.py --headless \
  --users "$USERS" --spawn-rate "$SPAWN_RATE" --run-time "$DURATION" --host "$HOST" \
  --stop-timeout 10 --csv "$OUT/locust" --only-summary >"$OUT/locust.log" 2>&1 || locust_rc=$?
tail -n 40 "$OUT/locust.log"

log "stopping the server and the worker"
cleanup

log "results"
report_rc=0
"$PY" - "$OUT" "$locust_rc" <<'EOF' || report_rc=$?
import json
import re
import sys
from pathlib import Path

out, locust_rc = Path(sys.argv[1]), int(sys.argv[2])
report = json.loads((out / "report.json").read_text())
page, api, auth = (report.get(kind, {}) for kind in ("page", "api", "auth"))
# The access log, independently of locust: every status gunicorn answered.
access = (out / "access.log").read_text(errors="replace").splitlines()
logged_5xx = sum(1 for line in access if re.search(r'" 5\d\d ', line))
print(f"requests: {report['total_requests']} in all; statuses {report['statuses']}")
print(f"steady state (after {sum(report.get('ramp_up_requests', {}).values())} ramp-up "
      f"requests): {page.get('requests', 0)} pages, {api.get('requests', 0)} API, "
      f"{auth.get('requests', 0)} sign-in")
print(f"page latency: p50 {page.get('p50_ms')} ms, p95 {page.get('p95_ms')} ms, "
      f"p99 {page.get('p99_ms')} ms, max {page.get('max_ms')} ms")
print(f"API latency:  p50 {api.get('p50_ms')} ms, p95 {api.get('p95_ms')} ms, "
      f"p99 {api.get('p99_ms')} ms, max {api.get('max_ms')} ms")
print(f"sign-in (password hashing): p50 {auth.get('p50_ms')} ms, p95 {auth.get('p95_ms')} ms")
print(f"5xx answers: {report['server_errors']} (access log: {logged_5xx}); "
      f"connection errors: {report['connection_errors']}; locust exit status {locust_rc}")
for sample in report["server_error_samples"]:
    print(f"  {sample}")
bad = (
    report["total_requests"] == 0
    or not page.get("requests")
    or report["server_errors"]
    or logged_5xx
    or report["connection_errors"]
)
sys.exit(1 if bad else 0)
EOF

"$PY" manage.py shell -v0 -c '
from django.db.models import Count
from changes.models import ChangeRequest, AuditEvent
from evaluations.models import EvaluationRun
from attestations.models import Attestation
def counts(qs, field):
    return dict(qs.values_list(field).annotate(n=Count("id")).values_list(field, "n"))
print("changes by state:", counts(ChangeRequest.objects, "state"))
print("runs by status:", counts(EvaluationRun.objects, "status"))
print("attestations by status:", counts(Attestation.objects, "status"))
print("audit events:", AuditEvent.objects.count())
'

log "manage.py verify_audit"
audit_rc=0
"$PY" manage.py verify_audit || audit_rc=$?

if [ "$report_rc" -ne 0 ] || [ "$audit_rc" -ne 0 ]; then
  echo "LOAD TEST FAILED (report: $report_rc, verify_audit: $audit_rc); logs in $OUT"
  exit 1
fi
echo "LOAD TEST PASSED; report and logs in $OUT"
