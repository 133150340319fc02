"""One env-driven settings module.

The embedded default (no env at all) is a newcomer's laptop: SQLite and a Celery worker on
kombu's ``filesystem://`` transport. Production sets ``DATABASE_URL``, ``CELERY_BROKER_URL``,
``SECRET_KEY`` and ``ALLOWED_HOSTS``.
"""

from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env(
    DEBUG=(bool, False),
    ALLOWED_HOSTS=(list, ["localhost", "127.0.0.1", "[::1]"]),
    CSRF_TRUSTED_ORIGINS=(list, []),
    EVAL_ALLOWED_HOSTS=(list, []),
    SECURE_SSL_REDIRECT=(bool, False),
)

DEBUG = env("DEBUG")
SECRET_KEY = env("SECRET_KEY", default="dev-insecure-" + "x" * 50)
ALLOWED_HOSTS = env("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "core",
    "changes",
    "evaluations",
    "attestations",
    "reviews",
    "monitoring",
]

MIDDLEWARE = [
    "core.limits.RequestSizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "core.request_context.ActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "core.context_processors.roles_context",
                "reviews.context_processors.inbox",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A worker process and the web server share the file: wait for locks, don't fail fast.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault("timeout", 30)
    DATABASES["default"]["OPTIONS"].setdefault(
        "init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    )
    DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
else:
    # Keep a server connection across requests (seconds; 0 = one per request): opening one
    # costs a TCP and authentication round trip on every page and API call. Health-checked
    # before reuse, so a restarted PostgreSQL costs one failed check, not a 500.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "core.authentication.ThrottledModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# Password checks are rate-limited (docs/rate-limits.md). django-axes locks a username+client
# pair after repeated failures (a third party only ever locks their own address out);
# core.throttle adds a per-client limit, a per-account soft delay (never a lockout) for
# unauthenticated attempts, and a per-account and per-client limit on sign-off passwords.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# Behind N reverse proxies that each append to X-Forwarded-For, set TRUSTED_PROXY_COUNT=N so
# the client address is the one the outermost proxy saw. Left at 0 behind a proxy, every
# client shares the proxy's address and per-client limits apply to everyone at once.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
AXES_CLIENT_IP_CALLABLE = "core.throttle.client_ip"
AXES_WHITELIST_CALLABLE = "core.throttle.delayed_by_throttle"
PASSWORD_FAILURE_WINDOW_SECONDS = env.int("PASSWORD_FAILURE_WINDOW_SECONDS", default=900)
SIGNOFF_FAILURE_LIMIT = env.int("SIGNOFF_FAILURE_LIMIT", default=5)
CLIENT_FAILURE_LIMIT = env.int("CLIENT_FAILURE_LIMIT", default=30)
LOGIN_SOFT_DELAY_AFTER = env.int("LOGIN_SOFT_DELAY_AFTER", default=10)
LOGIN_SOFT_DELAY_MAX = env.int("LOGIN_SOFT_DELAY_MAX", default=30)
# Rate-limit counters live in the default cache: use Redis in production
# (CACHE_URL=redis://...) so every web process shares them. Rendered diffs are cached apart
# (DIFF_CACHE_URL), so large entries never evict counters.
CACHES = {
    "default": env.cache_url("CACHE_URL", default="locmemcache://"),
    "diffs": env.cache_url("DIFF_CACHE_URL", default="locmemcache://diffs"),
}
if CACHES["default"]["BACKEND"].endswith("LocMemCache"):
    # Room for every counter (the default of 300 entries culls them under a spray).
    CACHES["default"].setdefault("OPTIONS", {})["MAX_ENTRIES"] = 100_000
if CACHES["diffs"]["BACKEND"].endswith("LocMemCache"):
    CACHES["diffs"].setdefault("OPTIONS", {})["MAX_ENTRIES"] = 256

# Content-Security-Policy (django-csp 4): scripts and styles only from our own static files,
# no inline script, no eval, no plugins, no framing. Templates keep no inline <script>,
# on*= handlers or style attributes (tests/security/test_csp.py checks them all).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

# API tokens (changes/tokens.py, docs/api-tokens.md): hashed, scoped, expiring after at most
# this many days, revoked on password change.
API_TOKEN_TTL_DAYS = env.int("API_TOKEN_TTL_DAYS", default=90)
# Not the "AXES: BEGIN version ..." banner in every process's output (manage.py, web, worker).
AXES_VERBOSE = False

SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
# WhiteNoise serves STATIC_ROOT. Pre-compressing (gzip + brotli) 500 files takes minutes on a
# small machine; `make run` (scripts/dev.py) turns it off with STATIC_COMPRESS=false, since a
# browser on the same machine gains nothing from it.
_STATIC_BACKEND = (
    "whitenoise.storage.CompressedStaticFilesStorage"
    if env.bool("STATIC_COMPRESS", default=True)
    else "django.contrib.staticfiles.storage.StaticFilesStorage"
)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": _STATIC_BACKEND},
}
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
MEDIA_URL = "media/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.authentication.TokenWithRolesAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON with size and depth limits checked before parsing (changes/limits.py).
    "DEFAULT_PARSER_CLASSES": [
        "core.limits.LimitedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 25,
    "DEFAULT_FILTER_BACKENDS": ["changes.filters.FilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
}
# Requests one web process lets wait at once on ``?wait_for=`` (changes.longpoll); keep it
# below gunicorn's threads so waiting clients never take every thread.
API_MAX_WAITERS = env.int("API_MAX_WAITERS", default=2)
SPECTACULAR_SETTINGS = {
    "TITLE": "Protocol-change management API",
    "DESCRIPTION": "Tracked protocol changes, alignment-faking evaluations, independent "
    "sign-off, a deploy gate for CI/CD, signed attestations and an append-only audit log.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # A system's criticality and a change's risk share one choice set: one enum component.
    "ENUM_NAME_OVERRIDES": {"CriticalityEnum": "changes.models.CRITICALITY_CHOICES"},
}

# Celery: the embedded default is a real worker on the filesystem transport.
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
# Options for a broker over the network (Redis; RabbitMQ ignores the socket_* ones), named
# so tests that swap in a private Redis can reuse them.
BROKER_NETWORK_TRANSPORT_OPTIONS = {
    "visibility_timeout": 3600,
    # The web process only sends wake-ups, and the reaper re-sends those it could not send,
    # so a request must fail fast while the broker is down, not wait for it (it took ~6 s).
    # kombu opens a producer's channel in its own retry loop (sleeping 2 s, 4 s, ... within
    # broker_connection_timeout) that apply_async(retry=False) does not reach (celery#6046);
    # this option is its only switch. Publishes that ask for retries still follow their
    # retry_policy, and workers and beat pass broker_connection_max_retries themselves.
    "max_retries": 0,
    # Without these, a connect to a blackholed broker host waits for the OS TCP timeout
    # (minutes), and a publish on a connection whose broker vanished waits forever. The
    # socket timeout stays well above kombu's 1 s BRPOP poll, which an idle worker keeps open.
    "socket_connect_timeout": env.float("CELERY_BROKER_CONNECT_TIMEOUT", default=2.0),
    "socket_timeout": env.float("CELERY_BROKER_SOCKET_TIMEOUT", default=10.0),
}
# RabbitMQ's connect timeout (py-amqp), for the same reason as socket_connect_timeout.
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_CONNECT_TIMEOUT", default=2.0)
if CELERY_BROKER_URL.startswith("filesystem://"):
    # config/broker.py (registered by config/celery.py) makes this transport crash-safe:
    # atomic message files, claims in claimed/ until acked, unreadable files in corrupt/.
    for sub in ("out", "processed", "control", "claimed"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "out"),
        "data_folder_out": str(BROKER_DIR / "out"),
        "data_folder_processed": str(BROKER_DIR / "processed"),
        # Fanout/pidbox exchanges: kombu's default is ./control in whatever the cwd is.
        "control_folder": str(BROKER_DIR / "control"),
        "claimed_folder": str(BROKER_DIR / "claimed"),
        "corrupt_folder": str(BROKER_DIR / "corrupt"),
        "store_processed": False,
        # kombu polls the folder; the 1 s default made every batch wait up to a second.
        "polling_interval": 0.1,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = dict(BROKER_NETWORK_TRANSPORT_OPTIONS)
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
_MONITORING_QUEUE = env.str("MONITORING_TASK_QUEUE", default="monitoring")
CELERY_BEAT_SCHEDULE = {
    "reap-expired-leases": {
        "task": "evaluations.reap_expired_leases",
        "schedule": env.float("EVAL_REAPER_INTERVAL", default=15.0),
    },
    # Attestation renders whose wake-up was lost (broker down) or whose worker died.
    "requeue-stalled-attestations": {"task": "attestations.requeue_stalled", "schedule": 60.0},
    # Live decisions whose grading wake-up was lost (docs/MONITORING.md).
    "monitoring-sweep": {
        "task": "monitoring.grade_pending",
        "schedule": 30.0,
        "options": {"queue": env.str("MONITORING_TASK_QUEUE", default="monitoring")},
    },
    "monitoring-probes": {
        "task": "monitoring.run_probes",
        "schedule": 3600.0 * env.float("MONITORING_PROBE_HOURS", default=6.0),
        "options": {
            "queue": env.str(
                "MONITORING_PROBE_QUEUE",
                default=env.str("MONITORING_TASK_QUEUE", default="monitoring"),
            )
        },
    },
    "monitoring-retention": {
        "task": "monitoring.prune_decisions",
        "schedule": 86400.0,
        "options": {"queue": env.str("MONITORING_TASK_QUEUE", default="monitoring")},
    },
    # Monthly decision partitions: create the coming months, drop those past retention.
    "monitoring-partitions": {
        "task": "monitoring.maintain_partitions",
        "schedule": 86400.0,
        "options": {"queue": env.str("MONITORING_TASK_QUEUE", default="monitoring")},
    },
    # Anchor the audit chain outside its table (docs/AUDIT.md).
    "publish-audit-checkpoint": {
        "task": "changes.publish_audit_checkpoint",
        "schedule": 60.0 * env.float("AUDIT_CHECKPOINT_MINUTES", default=10.0),
    },
    # Notification fan-outs, e-mails and webhook deliveries whose wake-up was lost.
    "requeue-stalled-notifications": {"task": "reviews.requeue_stalled", "schedule": 60.0},
}

# Evaluation engine.
EVAL_ALLOWED_HOSTS = env("EVAL_ALLOWED_HOSTS")
EVAL_BATCH_SIZE = env.int("EVAL_BATCH_SIZE", default=50)
# Tests and benchmarks set a private queue so parallel runs on one broker never mix.
EVAL_TASK_QUEUE = env.str("EVAL_TASK_QUEUE", default="celery")
EVAL_LEASE_SECONDS = env.int("EVAL_LEASE_SECONDS", default=60)
EVAL_ERROR_THRESHOLD = env.float("EVAL_ERROR_THRESHOLD", default=0.1)
EVAL_MAX_RESPONSE_BYTES = env.int("EVAL_MAX_RESPONSE_BYTES", default=1_000_000)
# Where registered secrets with source "file" are read (JSON object or KEY=value lines); see
# docs/SECRETS.md. Configs never name environment variables or files themselves.
EVAL_SECRETS_FILE = env.str("EVAL_SECRETS_FILE", default="")

# Input limits (docs/input-limits.md): a request body over REQUEST_MAX_BYTES is refused from
# its Content-Length (413) before it is read; an uploaded file stops streaming at
# FILE_UPLOAD_MAX_BYTES; JSON and YAML are checked for size and nesting before parsing.
REQUEST_MAX_BYTES = env.int("REQUEST_MAX_BYTES", default=64 * 1024 * 1024)
FILE_UPLOAD_MAX_BYTES = env.int("FILE_UPLOAD_MAX_BYTES", default=20 * 1024 * 1024)
FILE_UPLOAD_HANDLERS = [
    "core.limits.CappedUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
INPUT_MAX_DEPTH = env.int("INPUT_MAX_DEPTH", default=64)
INPUT_MAX_JSON_BYTES = env.int("INPUT_MAX_JSON_BYTES", default=2_000_000)
INPUT_MAX_YAML_EVENTS = env.int("INPUT_MAX_YAML_EVENTS", default=400_000)

# Protocol diffs (docs/diff.md): elementary steps one diff part may spend, the size above
# which a text is not diffed inline, the changed rows a page shows at most, cache lifetime.
DIFF_STEP_BUDGET = env.int("DIFF_STEP_BUDGET", default=1_000_000)
DIFF_INLINE_MAX_CHARS = env.int("DIFF_INLINE_MAX_CHARS", default=1_000_000)
DIFF_INLINE_MAX_CHANGED_ROWS = env.int("DIFF_INLINE_MAX_CHANGED_ROWS", default=1000)
DIFF_CACHE_SECONDS = env.int("DIFF_CACHE_SECONDS", default=24 * 3600)

# Attestations: an Ed25519 key from a file or an env var; a dev key is generated when absent.
ATTESTATION_SIGNING_KEY_FILE = env.str(
    "ATTESTATION_SIGNING_KEY_FILE", default=str(VAR_DIR / "keys" / "attestation-dev.pem")
)
ATTESTATION_SIGNING_KEY = env.str("ATTESTATION_SIGNING_KEY", default="")
ATTESTATION_PUBLIC_KEYS_DIR = env.str(
    "ATTESTATION_PUBLIC_KEYS_DIR", default=str(VAR_DIR / "keys" / "trusted")
)
ATTESTATION_RENDER_TIME_LIMIT = env.int("ATTESTATION_RENDER_TIME_LIMIT", default=120)
# The attestation CA (PAdES certificates); default: "ca" next to the signing key file. Web and
# workers must share it (docs/pades.md).
ATTESTATION_CA_DIR = env.str("ATTESTATION_CA_DIR", default="")
ATTESTATION_DEPLOYMENT_NAME = env.str("ATTESTATION_DEPLOYMENT_NAME", default="")

# Signed checkpoints of the audit chain (docs/AUDIT.md): an append-only directory outside the
# database, signed with the attestation key unless a key of their own is configured.
AUDIT_CHECKPOINT_DIR = env.str("AUDIT_CHECKPOINT_DIR", default=str(VAR_DIR / "checkpoints"))
AUDIT_CHECKPOINT_ORIGIN = env.str(
    "AUDIT_CHECKPOINT_ORIGIN", default="localhost/protocol-change/audit"
)
AUDIT_CHECKPOINT_SIGNING_KEY = env.str("AUDIT_CHECKPOINT_SIGNING_KEY", default="")
AUDIT_CHECKPOINT_SIGNING_KEY_FILE = env.str("AUDIT_CHECKPOINT_SIGNING_KEY_FILE", default="")
# The evidence package streams; this bounds what one package may hold.
EVIDENCE_MAX_BYTES = env.int("EVIDENCE_MAX_BYTES", default=200 * 1024 * 1024)

# Notifications (reviews app): console e-mail by default; SMTP with EMAIL_URL, e.g.
# smtp+tls://user:password@smtp.example.com:587 (django-environ's email_url).
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="pcm@localhost")
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
SITE_URL = env.str("SITE_URL", default="http://localhost:8000")
# Outgoing webhooks go through the evaluation host guard; hosts allowed despite being private.
WEBHOOK_ALLOWED_HOSTS = env.list("WEBHOOK_ALLOWED_HOSTS", default=[])
WEBHOOK_TIMEOUT = env.float("WEBHOOK_TIMEOUT", default=5.0)
# Optional queue for notification and webhook tasks (empty: Celery's default queue).
REVIEWS_TASK_QUEUE = env.str("REVIEWS_TASK_QUEUE", default="")

if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_SSL_REDIRECT = env("SECURE_SSL_REDIRECT")
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
    X_FRAME_OPTIONS = "DENY"
    # /healthz and /readyz are probed over plain HTTP inside the cluster.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"httpx": {"level": "WARNING"}, "weasyprint": {"level": "ERROR"}},
}

# Live monitoring (docs/MONITORING.md). Grading runs on its own queue so it never waits
# behind evaluation batches: start a worker with ``-Q monitoring`` (``make run`` listens on both).
MONITORING_TASK_QUEUE = env.str("MONITORING_TASK_QUEUE", default="monitoring")
MONITORING_MAX_BODY_BYTES = env.int("MONITORING_MAX_BODY_BYTES", default=256 * 1024 * 1024)
MONITORING_MAX_LINE_BYTES = env.int("MONITORING_MAX_LINE_BYTES", default=1024 * 1024)
MONITORING_MAX_TEXT_CHARS = env.int("MONITORING_MAX_TEXT_CHARS", default=32 * 1024)
MONITORING_MAX_AGE_DAYS = env.int("MONITORING_MAX_AGE_DAYS", default=30)
MONITORING_MAX_CLOCK_SKEW_S = env.int("MONITORING_MAX_CLOCK_SKEW_S", default=300)
# A batch is one transaction (one COPY, one commit), stored when it reaches either bound;
# the byte bound caps memory per request when records are large.
MONITORING_INGEST_BATCH = env.int("MONITORING_INGEST_BATCH", default=1000)
MONITORING_INGEST_BATCH_BYTES = env.int("MONITORING_INGEST_BATCH_BYTES", default=8 * 1024 * 1024)
# Decisions per grading transaction: the claim query costs per batch, so 2,000 grades ~1.5x
# faster than 1,000 (docs/MONITORING.md); memory is bounded by batch x MAX_TEXT_CHARS.
MONITORING_GRADE_BATCH = env.int("MONITORING_GRADE_BATCH", default=2000)
MONITORING_WINDOW_MINUTES = env.int("MONITORING_WINDOW_MINUTES", default=60)
MONITORING_REVIEW_FRACTION = env.float("MONITORING_REVIEW_FRACTION", default=0.02)
MONITORING_MIN_REVIEWS = env.int("MONITORING_MIN_REVIEWS", default=10)
MONITORING_OTLP_MAX_BYTES = env.int("MONITORING_OTLP_MAX_BYTES", default=16 * 1024 * 1024)
MONITORING_RETENTION_DAYS = env.int("MONITORING_RETENTION_DAYS", default=400)
# PostgreSQL: monthly decision partitions created this many months ahead (monitoring/partitions.py).
MONITORING_PARTITIONS_AHEAD = env.int("MONITORING_PARTITIONS_AHEAD", default=3)
MONITORING_PROBE_BUDGET = env.int("MONITORING_PROBE_BUDGET", default=20)
# Probes call the target (model cost, seconds each): their own queue lets an operator give
# them their own worker; by default they share the monitoring queue.
# Graded live decisions of a monitored change a staged rollout needs per completed stage
# before the next stage may start.
MONITORING_STAGE_MIN_DECISIONS = env.int("MONITORING_STAGE_MIN_DECISIONS", default=100)
MONITORING_PROBE_QUEUE = env.str("MONITORING_PROBE_QUEUE", default=MONITORING_TASK_QUEUE)
# The monitoring window a deployed change must run through before it is closed (post-
# implementation review): per system criticality, days since it reached its last environment,
# or this many human-reviewed live decisions of the change, whichever comes first.
MONITORING_CLOSE_DAYS = {
    "low": env.float("MONITORING_CLOSE_DAYS_LOW", default=1.0),
    "medium": env.float("MONITORING_CLOSE_DAYS_MEDIUM", default=3.0),
    "high": env.float("MONITORING_CLOSE_DAYS_HIGH", default=7.0),
    "critical": env.float("MONITORING_CLOSE_DAYS_CRITICAL", default=14.0),
}
MONITORING_CLOSE_REVIEWS = {
    "low": env.int("MONITORING_CLOSE_REVIEWS_LOW", default=50),
    "medium": env.int("MONITORING_CLOSE_REVIEWS_MEDIUM", default=100),
    "high": env.int("MONITORING_CLOSE_REVIEWS_HIGH", default=200),
    "critical": env.int("MONITORING_CLOSE_REVIEWS_CRITICAL", default=400),
}
