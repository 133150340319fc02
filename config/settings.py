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
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "changes",
    "evaluations",
    "attestations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
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
                "changes.context_processors.roles_context",
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
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# Login throttling (django-axes): lock a username after repeated failures.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
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
        "changes.authentication.TokenWithRolesAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 25,
    "DEFAULT_FILTER_BACKENDS": ["changes.filters.FilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "changes.errors.api_exception_handler",
}
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
CELERY_BEAT_SCHEDULE = {
    "reap-expired-leases": {
        "task": "evaluations.reap_expired_leases",
        "schedule": env.float("EVAL_REAPER_INTERVAL", default=15.0),
    },
    # Attestation renders whose wake-up was lost (broker down) or whose worker died.
    "requeue-stalled-attestations": {"task": "attestations.requeue_stalled", "schedule": 60.0},
}

# Evaluation engine.
EVAL_ALLOWED_HOSTS = env("EVAL_ALLOWED_HOSTS")
EVAL_BATCH_SIZE = env.int("EVAL_BATCH_SIZE", default=50)
# Tests and benchmarks set a private queue so parallel runs on one broker never mix.
EVAL_TASK_QUEUE = env.str("EVAL_TASK_QUEUE", default="celery")
EVAL_LEASE_SECONDS = env.int("EVAL_LEASE_SECONDS", default=60)
EVAL_ERROR_THRESHOLD = env.float("EVAL_ERROR_THRESHOLD", default=0.1)
EVAL_MAX_RESPONSE_BYTES = env.int("EVAL_MAX_RESPONSE_BYTES", default=1_000_000)

# Attestations: an Ed25519 key from a file or an env var; a dev key is generated when absent.
ATTESTATION_SIGNING_KEY_FILE = env.str(
    "ATTESTATION_SIGNING_KEY_FILE", default=str(VAR_DIR / "keys" / "attestation-dev.pem")
)
ATTESTATION_SIGNING_KEY = env.str("ATTESTATION_SIGNING_KEY", default="")
ATTESTATION_PUBLIC_KEYS_DIR = env.str(
    "ATTESTATION_PUBLIC_KEYS_DIR", default=str(VAR_DIR / "keys" / "trusted")
)
ATTESTATION_RENDER_TIME_LIMIT = env.int("ATTESTATION_RENDER_TIME_LIMIT", default=120)

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
