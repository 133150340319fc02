#!/bin/sh
# Container entrypoint for web, worker and beat: optional start-up steps, then the command.
#   DJANGO_MIGRATE_ON_START=true  apply migrations first (set it on the web service only)
#   DJANGO_SEED_DEMO=true         also load the demo data (and a development signing key)
set -eu

cd /app

if [ "${DJANGO_MIGRATE_ON_START:-false}" = "true" ]; then
    echo "entrypoint: applying migrations"
    python manage.py migrate --noinput
    # Anchor the audit chain at every release (docs/AUDIT.md); a refusal names the problem.
    python manage.py publish_checkpoint --reason release || echo "entrypoint: checkpoint refused"
fi

if [ "${DJANGO_SEED_DEMO:-false}" = "true" ]; then
    echo "entrypoint: seeding demo data"
    python manage.py seed_demo
fi

exec "$@"
