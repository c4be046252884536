"""Settings for llmobserve, read from the environment.

Every value comes from an environment variable with a default that makes a
fresh clone work with nothing installed (SQLite under var/, an embedded Celery
broker).  A value that cannot be parsed stops start-up with a clear message
instead of being silently replaced by a default.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from llmobserve_site.owner_only import generated_secret_key, owner_only_dir

BASE_DIR = Path(__file__).resolve().parent.parent
# SQLite (with the session keys), the generated secret key, the embedded
# broker: readable by the owner only (0700, tightened if it was wider).
VAR_DIR = owner_only_dir(Path(os.environ.get("LLMOBSERVE_VAR_DIR", BASE_DIR / "var")))


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r} must be >= {minimum}")
    return value


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")
# Behind a TLS-terminating proxy (the usual production set-up): trust its
# X-Forwarded-Proto and send cookies over HTTPS only.
# Behind our own proxy (compose's nginx sets BEHIND_PROXY=1 on web): the client's
# address is the last X-Forwarded-For entry, the one the proxy appended (what a
# client writes there comes before it), so login lockouts count by client.
BEHIND_PROXY = env_bool("BEHIND_PROXY", False) or env_bool("BEHIND_HTTPS_PROXY", False)
if env_bool("BEHIND_HTTPS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
# Strict-Transport-Security on every https response (SecurityMiddleware sends
# it only when the request is secure: through that proxy, or TLS served
# directly), never on plain http such as `make run`'s, never with DEBUG.
if not DEBUG:
    SECURE_HSTS_SECONDS = 365 * 24 * 3600

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "axes",
    "csp",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from here for /api/docs/ (no CDN)
    "django_htmx",
    "template_partials",
    "projects",
    "pricing",
    "events",
    "dashboard",
    "insights",
    "attribution",
    "reconciliation",
    "otlp",
    "budgets",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "llmobserve_site.unavailable.DatabaseUnavailableMiddleware",  # 503 + Retry-After without a database
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "llmobserve_site.urls"
WSGI_APPLICATION = "llmobserve_site.wsgi.application"

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
                # {{ CSP_NONCE }}: <script nonce="{{ CSP_NONCE }}"> if an inline script is ever needed.
                "csp.context_processors.nonce",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
_database_url = os.environ.get("DATABASE_URL", "")
if _database_url:
    try:
        _db = dj_database_url.parse(_database_url, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from None
    if _db.get("ENGINE") not in {"django.db.backends.postgresql", "django.db.backends.sqlite3"}:
        raise ImproperlyConfigured(f"DATABASE_URL engine {_db.get('ENGINE')!r} is not supported (postgres or sqlite)")
else:
    _db = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(VAR_DIR / "llmobserve.sqlite3"),
        # Persistent: closing the last connection checkpoints and deletes the WAL on every request.
        "CONN_MAX_AGE": env_int("DB_CONN_MAX_AGE", 60),
    }

if _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the dashboard read while ingest writes; a 64 MiB page cache
    # keeps the event indexes' hot pages in memory, so a commit does not
    # re-read and re-write them (the benchmark's commit time fell ~5x);
    # IMMEDIATE takes the
    # write lock at BEGIN so two writers queue on the busy timeout instead of
    # failing with "database is locked" when a read lock is upgraded.
    _db.setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-65536;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
    )
    # A file (not :memory:) so live-server and thread tests share it; one per
    # process so two test runs on one machine never clobber each other.
    _db.setdefault("TEST", {})["NAME"] = str(VAR_DIR / f"test-{os.getpid()}.sqlite3")
    # Django's SQLite backend, creating the database file 0600 (it holds the session keys).
    _db["ENGINE"] = "llmobserve_site.sqlite"
else:
    # One test database per test process, as for SQLite: two suites on one
    # machine (CI beside a developer, parallel work) never share test_<name>.
    _db.setdefault("TEST", {})["NAME"] = f"test_{_db['NAME']}_{os.getpid()}"
DATABASES = {"default": _db}


# --- Secret key ---------------------------------------------------------------
# Production (PostgreSQL, DEBUG off) needs SECRET_KEY, the same on every web
# container, worker and beat: a key generated per container would break
# sessions across replicas and recreates.  The embedded default (SQLite, or
# DEBUG on) generates one once into var/secret_key (0600).
PLACEHOLDER_SECRET_KEYS = frozenset({"change-me-to-a-long-random-string"})
_KEY_HOWTO = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'"


def _secret_key(*, production: bool) -> str:
    key = os.environ.get("SECRET_KEY", "")
    if key.strip() in PLACEHOLDER_SECRET_KEYS and not DEBUG:
        raise ImproperlyConfigured(
            f"SECRET_KEY is still the .env.example placeholder {key.strip()!r}: set it to a long random string, "
            f"the same on every container ({_KEY_HOWTO})"
        )
    if key.strip():
        return key
    if production:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. With a PostgreSQL DATABASE_URL (production) it is required, the same on every "
            f"web container, worker and beat: set it in .env ({_KEY_HOWTO}). Only the embedded SQLite default "
            "generates one into var/secret_key."
        )
    return generated_secret_key(VAR_DIR / "secret_key")


SECRET_KEY = _secret_key(production=_db["ENGINE"] == "django.db.backends.postgresql" and not DEBUG)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Login throttling (django-axes) -----------------------------------------------
# After 5 failed logins for one username from one address, that username is
# refused from that address, right password or not, for 15 minutes after the
# last failure (attempts while locked do not extend it).  The dashboard's login
# and the admin's both count; an admin lifts a lock in the admin (Axes ›
# Access attempts) or with `manage.py axes_reset_username NAME`.
AUTHENTICATION_BACKENDS = [
    "llmobserve_site.login_throttle.LoginThrottleBackend",  # first: refuses a locked-out login
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = dt.timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "llmobserve_site.login_throttle.lockout_response"
# REMOTE_ADDR; behind the https proxy, the last X-Forwarded-For entry (the address the proxy saw).
AXES_CLIENT_IP_CALLABLE = "llmobserve_site.login_throttle.client_ip"
AXES_VERBOSE = False  # no banner on every start; lockouts are still logged as warnings

# --- Content-Security-Policy (django-csp) ---------------------------------------
# Everything is served from here (htmx and the charts included): no inline
# script or style (a nonce'd <script nonce="{{ CSP_NONCE }}"> is the only way
# in), no framing, forms post only back here.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "staticfiles"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "projects.auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "llmobserve collector API",
    "DESCRIPTION": "Ingest LLM and vector-DB call events, read runs, insights and prices.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "OAS_VERSION": "3.1.0",
    # /api/docs/: Swagger UI from drf-spectacular-sidecar's static files, never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "/favicon.ico",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "events.openapi.add_ingest_path",
    ],
}

# --- Ingest limits (SPEC §2) ------------------------------------------------
INGEST_MAX_EVENTS = 1000
INGEST_MAX_BYTES = 5 * 1024 * 1024
# Django reads the body itself for uploads; our view reads it raw, so let the
# request through and enforce INGEST_MAX_BYTES (after gunzip) in the view.
DATA_UPLOAD_MAX_MEMORY_SIZE = INGEST_MAX_BYTES + 1024

# --- Celery ----------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "") or "filesystem://"
CELERY_EMBEDDED_BROKER = CELERY_BROKER_URL == "filesystem://"
if CELERY_EMBEDDED_BROKER:
    _queue_dir = VAR_DIR / "celery" / "queue"
    _processed_dir = VAR_DIR / "celery" / "processed"
    _queue_dir.mkdir(parents=True, exist_ok=True)
    _processed_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_processed_dir),
        # Otherwise kombu keeps its exchange table in ./control under the cwd.
        "control_folder": str(VAR_DIR / "celery" / "control"),
        "store_processed": False,
    }
elif not CELERY_BROKER_URL.startswith(("redis://", "rediss://", "amqp://", "memory://")):
    raise ImproperlyConfigured(f"CELERY_BROKER_URL={CELERY_BROKER_URL!r}: use redis://…, amqp://… or leave it unset")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
INSIGHTS_INTERVAL_SECONDS = env_int("INSIGHTS_INTERVAL_SECONDS", 600, minimum=10)
# Raw events are kept this many days (0: forever); a project may override it
# (Project.event_retention_days).  Aggregates keep their history (events/retention.py).
EVENT_RETENTION_DAYS = env_int("EVENT_RETENTION_DAYS", 90, minimum=0)
if EVENT_RETENTION_DAYS > 36500:
    raise ImproperlyConfigured(f"EVENT_RETENTION_DAYS={EVENT_RETENTION_DAYS} is over 100 years: use 0 to keep forever")
EVENT_RETENTION_INTERVAL_SECONDS = env_int("EVENT_RETENTION_INTERVAL_SECONDS", 3600, minimum=60)
# How often the breakdown presets' attribute windows are checked and rebuilt when
# stale or when the day turns (attribution/services.py); a fresh window costs one read.
ATTRIBUTE_WINDOWS_INTERVAL_SECONDS = env_int("ATTRIBUTE_WINDOWS_INTERVAL_SECONDS", 600, minimum=60)
# Runs and their sections are kept this many days after they ended (0: forever, the default).
# Refused below EVENT_RETENTION_DAYS: a run never goes while its events are kept (events/retention.py;
# a project keeping its events longer keeps its runs as long).
RUN_RETENTION_DAYS = env_int("RUN_RETENTION_DAYS", 0, minimum=0)
if RUN_RETENTION_DAYS > 36500:
    raise ImproperlyConfigured(f"RUN_RETENTION_DAYS={RUN_RETENTION_DAYS} is over 100 years: use 0 to keep forever")
if 0 < RUN_RETENTION_DAYS < EVENT_RETENTION_DAYS:
    raise ImproperlyConfigured(
        f"RUN_RETENTION_DAYS={RUN_RETENTION_DAYS} is shorter than EVENT_RETENTION_DAYS={EVENT_RETENTION_DAYS}: "
        "a run is kept at least as long as its events (use 0 to keep runs forever)"
    )
# How often the dashboard's run list polls for new runs.
DASHBOARD_POLL_SECONDS = env_int("DASHBOARD_POLL_SECONDS", 5, minimum=1)
# How long an OTLP span waits for its parent span before it is stored without it (otlp/models.py).
OTLP_PENDING_SECONDS = env_int("OTLP_PENDING_SECONDS", 60, minimum=0)

# --- Budgets and alerts (budgets/, README "Budgets and alerts") ---------------
# EMAIL_URL: smtp://user:pass@host:587?tls=1 and the like; unset = console backend.
from budgets.email_url import email_settings  # noqa: E402  (no Django models imported)

for _name, _value in email_settings(os.environ.get("EMAIL_URL", "")).items():
    globals()[_name] = _value
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "") or globals().get(
    "DEFAULT_FROM_EMAIL", "llmobserve <alerts@localhost>"
)
# The dashboard's address, for the links alerts carry.
PUBLIC_URL = os.environ.get("PUBLIC_URL", "") or "http://127.0.0.1:8000"
# 30 s: an alert goes out within a minute of the spend even with a slow tick.
BUDGETS_EVALUATE_SECONDS = env_int("BUDGETS_EVALUATE_SECONDS", 30, minimum=5)
BUDGETS_DELIVERY_MAX_ATTEMPTS = env_int("BUDGETS_DELIVERY_MAX_ATTEMPTS", 5, minimum=1)
BUDGETS_DELIVERY_BACKOFF_SECONDS = env_int("BUDGETS_DELIVERY_BACKOFF_SECONDS", 10, minimum=0)

# --- Reconciliation (reconciliation/, README "Reconciliation") -----------------
# OPENAI_ADMIN_KEY and OPENAI_ADMIN_BASE_URL are read from the environment when
# the bill is imported (reconciliation/openai_admin.py), never kept in settings.
RECONCILE_BACKFILL_DAYS = env_int("RECONCILE_BACKFILL_DAYS", 30, minimum=1)
RECONCILE_SETTLE_DAYS = env_int("RECONCILE_SETTLE_DAYS", 3, minimum=0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
