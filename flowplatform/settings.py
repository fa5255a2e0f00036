"""Django settings, read from the environment (12-factor).

Without any variable set the project runs on embedded defaults: SQLite under ``var/``, flow
data under ``var/flowdata`` and Celery tasks executed in-process. Every variable is documented
in ``.env.example``.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import environ

from flowplatform.env import SettingsError, env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
if (BASE_DIR / ".env").is_file():
    # Values already in the environment win over the file.
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)
VAR_DIR = Path(env_str("FLOWPLATFORM_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("FLOWPLATFORM_DEBUG", False)
# Required outside the embedded demo (checked under "Secrets" below).
SECRET_KEY = env_str("FLOWPLATFORM_SECRET_KEY", "").strip()
ALLOWED_HOSTS = env_list("FLOWPLATFORM_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")

# --- HTTPS (docs/deployment.md#https): off for the demo, on in production ---------------------
# Served over HTTPS: secure cookies, plain-HTTP requests redirected, HSTS for a year by default.
FLOWPLATFORM_HTTPS = env_bool("FLOWPLATFORM_HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT = FLOWPLATFORM_HTTPS
SECURE_HSTS_SECONDS = env_int("FLOWPLATFORM_HSTS_SECONDS", 365 * 86400 if FLOWPLATFORM_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("FLOWPLATFORM_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("FLOWPLATFORM_HSTS_PRELOAD", False)


def _proxy_ssl_header(raw: str) -> tuple[str, str] | None:
    """``X-Forwarded-Proto`` (value ``https``) or ``NAME=VALUE``: the header a TLS-terminating
    proxy sets, and that it must strip from what clients send."""
    if not raw.strip():
        return None
    name, _, value = raw.partition("=")
    name, value = name.strip(), value.strip() or "https"
    if not name or not all(c.isalnum() or c == "-" for c in name):
        raise SettingsError(
            f"FLOWPLATFORM_PROXY_SSL_HEADER must be a header name such as X-Forwarded-Proto, "
            f"optionally =VALUE, not {raw!r}"
        )
    return f"HTTP_{name.upper().replace('-', '_')}", value


SECURE_PROXY_SSL_HEADER = _proxy_ssl_header(env_str("FLOWPLATFORM_PROXY_SSL_HEADER", ""))
# Origins (scheme://host[:port]) whose form posts pass the CSRF check, e.g. the public URL.
CSRF_TRUSTED_ORIGINS = env_list("FLOWPLATFORM_CSRF_TRUSTED_ORIGINS")
for _origin in CSRF_TRUSTED_ORIGINS:
    if "://" not in _origin:
        raise SettingsError(
            f"FLOWPLATFORM_CSRF_TRUSTED_ORIGINS entries need a scheme (https://...), not {_origin!r}"
        )

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "nodes",
    "flows",
    "scheduling",
    "flowplatform.audit",
    "flowplatform.alerts",
]

MIDDLEWARE = [
    # /healthz, /readyz, /metrics: answered before the host check and the HTTPS redirect.
    "flowplatform.health.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves STATIC_ROOT (collected at image build) without DEBUG: admin, Swagger UI.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "flowplatform.audit.middleware.AuditMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "flowplatform.urls"
WSGI_APPLICATION = "flowplatform.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", "")
if not DATABASE_URL:
    # The platform's own files (the SQLite database, flow data): its user's only.
    VAR_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    DATABASE_URL = f"sqlite:///{VAR_DIR / 'flowplatform.sqlite3'}"
try:
    DATABASES = {"default": environ.Env.db_url_config(DATABASE_URL)}
except (KeyError, ValueError) as exc:
    raise SettingsError(
        f"DATABASE_URL is not a database URL this platform supports: {exc}"
    ) from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("CONN_MAX_AGE", env_int("DATABASE_CONN_MAX_AGE", 60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Nothing of the platform's needs a database session of its own (the engine's prepared
    # statements are named after their content and run unprepared where a pooler does not keep
    # them, decision 0050; no session locks; no server-side cursors, which would outlive the
    # transaction), so it may sit behind a transaction-mode pooler such as PgBouncer
    # (docs/deployment.md).
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# --- REST API (flows/api, nodes/api; shared pieces in flowplatform/api) ---------------------
# Largest request body accepted; a bigger one is answered 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("FLOWPLATFORM_MAX_REQUEST_BYTES", 2 * 1024 * 1024)
REST_FRAMEWORK = {
    # Token first: its `WWW-Authenticate` header makes anonymous requests 401, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "flowplatform.api.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["flowplatform.api.permissions.ModelPermissions"],
    "DEFAULT_PARSER_CLASSES": ["flowplatform.api.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PAGINATION_CLASS": "flowplatform.api.pagination.Pagination",
    "DEFAULT_FILTER_BACKENDS": ["flowplatform.api.filters.FilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "flowplatform.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "flowplatform.api.errors.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
# Serve the OpenAPI schema and Swagger UI to anonymous visitors too (they map the whole API).
FLOWPLATFORM_API_DOCS_PUBLIC = env_bool("FLOWPLATFORM_API_DOCS_PUBLIC", False)
SPECTACULAR_SETTINGS = {
    "TITLE": "Flow Platform API",
    "DESCRIPTION": (
        "Create, validate and version flows, start and follow runs, browse the node catalog "
        "and manage connections. Authenticate with `Authorization: Token <key>` "
        "(`manage.py createapitoken USERNAME`). Every error is JSON: "
        '`{"detail": ..., "errors": [{"path", "message", "node"}]}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and Swagger UI views (flowplatform/api/docs.py) authenticate like the API and
    # answer anonymous requests only with FLOWPLATFORM_API_DOCS_PUBLIC.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SERVE_AUTHENTICATION": None,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True, "deepLinking": True},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "flowplatform.api.schema.add_links",
    ],
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "flows.models.RunStatus",
        "NodeStatusEnum": "flows.models.NodeStatus",
        "TriggerEnum": "flows.models.Trigger",
    },
}

# --- Flow data storage (claim-check hand-off between nodes) ---------------------------------
FLOW_DATA_STORAGE = env_str("FLOW_DATA_STORAGE", str(VAR_DIR / "flowdata"))
AWS_S3_ENDPOINT_URL = env_str("AWS_S3_ENDPOINT_URL", "") or None
AWS_S3_REGION_NAME = env_str("AWS_S3_REGION_NAME", env_str("AWS_DEFAULT_REGION", "us-east-1"))
# "path" for MinIO and most S3-compatible servers; "auto" lets boto3 choose.
AWS_S3_ADDRESSING_STYLE = env_str("AWS_S3_ADDRESSING_STYLE", "auto")
# Unset: boto3's own chain (environment, shared files, instance role). *_FILE works for both.
AWS_ACCESS_KEY_ID = env_str("AWS_ACCESS_KEY_ID", "") or None
AWS_SECRET_ACCESS_KEY = env_str("AWS_SECRET_ACCESS_KEY", "") or None


def _flow_data_backend(location: str) -> dict[str, object]:
    if location.startswith("s3://"):
        bucket, _, prefix = location[len("s3://") :].partition("/")
        if not bucket:
            raise SettingsError("FLOW_DATA_STORAGE s3:// URL must name a bucket")
        return {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": bucket,
                "location": prefix.strip("/"),
                "endpoint_url": AWS_S3_ENDPOINT_URL,
                "region_name": AWS_S3_REGION_NAME,
                "addressing_style": AWS_S3_ADDRESSING_STYLE,
                "access_key": AWS_ACCESS_KEY_ID,
                "secret_key": AWS_SECRET_ACCESS_KEY,
                "file_overwrite": True,
                "default_acl": None,
                # A node reads its input through a local spool: disk beyond 8 MiB, not memory.
                "max_memory_size": 8 * 1024 * 1024,
            },
        }
    return {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        # Records of every run, whatever the sources held: the platform's user only. Directories
        # are created 0700, so no one else reaches a file even before its mode is set to 0600.
        "OPTIONS": {
            "location": location,
            "allow_overwrite": True,
            "file_permissions_mode": 0o600,
            "directory_permissions_mode": 0o700,
        },
    }


STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "flowdata": _flow_data_backend(FLOW_DATA_STORAGE),
}

# --- Secrets ---------------------------------------------------------------------------------
# Only the embedded demo (no broker and a SQLite database) may run on the published key below:
# anywhere else it would sign sessions and, through the derived Fernet key, decrypt a database
# dump's connection secrets with public information. There a missing key stops the process.
EMBEDDED_DEMO = not env_str("CELERY_BROKER_URL", "") and (
    DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
)
DEMO_SECRET_KEY = "insecure-embedded-default-set-FLOWPLATFORM_SECRET_KEY"  # noqa: S105
#: Every key published in the repository (the test suite's, the benchmarks') carries this mark;
#: only a process that sets FLOWPLATFORM_PUBLISHED_KEY_ALLOWED (the test and benchmark settings
#: do) accepts such a key.
PUBLISHED_KEY_MARK = "published-in-the-repository-never-deploy-it"
if SECRET_KEY in ("change-me", DEMO_SECRET_KEY) and not EMBEDDED_DEMO:
    raise SettingsError(
        "FLOWPLATFORM_SECRET_KEY is a published example value: set a secret key of your own"
    )
if PUBLISHED_KEY_MARK in SECRET_KEY.lower() and not env_bool(
    "FLOWPLATFORM_PUBLISHED_KEY_ALLOWED", False
):
    raise SettingsError(
        "FLOWPLATFORM_SECRET_KEY is a key published in the repository for tests and "
        "benchmarks: set a secret key of your own"
    )
if not SECRET_KEY:
    if not EMBEDDED_DEMO:
        raise SettingsError(
            "FLOWPLATFORM_SECRET_KEY is not set: the platform refuses to start without a secret "
            "key outside the embedded demo (generate one: python -c "
            '"import secrets; print(secrets.token_urlsafe(50))")'
        )
    SECRET_KEY = DEMO_SECRET_KEY
# Fernet keys for connection secrets: the first encrypts, all decrypt (rotation).
FLOWPLATFORM_ENCRYPTION_KEYS = env_list("FLOWPLATFORM_ENCRYPTION_KEYS")
if not FLOWPLATFORM_ENCRYPTION_KEYS:
    _derived = hashlib.sha256(f"flowplatform-fernet:{SECRET_KEY}".encode()).digest()
    FLOWPLATFORM_ENCRYPTION_KEYS = [base64.urlsafe_b64encode(_derived).decode()]

# --- Outbound HTTP ---------------------------------------------------------------------------
# Loopback and private ranges are refused unless allowed; link-local/metadata always are.
FLOWPLATFORM_HTTP_ALLOW_PRIVATE = env_bool("FLOWPLATFORM_HTTP_ALLOW_PRIVATE", False)

# --- Database connections (nodes/dbguard.py) -------------------------------------------------
# The same address policy for database hosts; unset, it follows FLOWPLATFORM_HTTP_ALLOW_PRIVATE.
FLOWPLATFORM_DB_ALLOW_PRIVATE = env_bool(
    "FLOWPLATFORM_DB_ALLOW_PRIVATE", FLOWPLATFORM_HTTP_ALLOW_PRIVATE
)
# SQLite connections read files only inside these directories (the demo's warehouse by default).
FLOWPLATFORM_SQLITE_DIRS = env_list("FLOWPLATFORM_SQLITE_DIRS", str(VAR_DIR / "demo"))

# --- File connections (nodes/filestore.py) ---------------------------------------------------
# file:/// connections may only name directories inside these (comma-separated; empty: none).
FLOWPLATFORM_FILE_ROOTS = env_list("FLOWPLATFORM_FILE_ROOTS", "")
for _root in FLOWPLATFORM_FILE_ROOTS:
    if not Path(_root).is_absolute() or Path(_root).resolve() == Path("/"):
        raise SettingsError(
            f"FLOWPLATFORM_FILE_ROOTS: '{_root}' is not an absolute directory below / "
            "(each root is a directory file:// connections may use, e.g. /srv/landing)"
        )

# --- Celery ----------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "")
# No broker configured: execute the canvas in-process (the embedded demo mode).
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", CELERY_BROKER_URL) or None
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "flowplatform")
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A failing fan-out branch must reach the run's error callback too.
CELERY_TASK_ALLOW_ERROR_CB_ON_CHORD_HEADER = True
CELERY_RESULT_EXPIRES = env_int("CELERY_RESULT_EXPIRES", 86400)
# Celery's Django fix-up closes every database connection around every task unless this is
# set; a new PostgreSQL connection per task cost more than a short node's whole bookkeeping.
# Connections are instead kept as Django keeps them between requests (CONN_MAX_AGE, health
# checks, closed after an error: flowplatform/celery.py) and recycled every this many tasks.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
# Data previews (POST /api/v1/flows/.../preview/) run in the web process: their time bound,
# seconds, and the most bytes of records one answer carries.
FLOWPLATFORM_PREVIEW_TIMEOUT_S = env_int("FLOWPLATFORM_PREVIEW_TIMEOUT_S", 30)
FLOWPLATFORM_PREVIEW_MAX_BYTES = env_int("FLOWPLATFORM_PREVIEW_MAX_BYTES", 2 * 1024 * 1024)
# Sources that partition on their own (sql_query without partition_rows, docs/nodes.md): only
# from this many expected rows (0: never), in partitions of about this many rows.
FLOWPLATFORM_AUTO_PARTITION_MIN_ROWS = env_int("FLOWPLATFORM_AUTO_PARTITION_MIN_ROWS", 50_000)
FLOWPLATFORM_AUTO_PARTITION_ROWS = env_int("FLOWPLATFORM_AUTO_PARTITION_ROWS", 50_000)
if FLOWPLATFORM_AUTO_PARTITION_MIN_ROWS < 0 or FLOWPLATFORM_AUTO_PARTITION_ROWS < 1:
    raise SettingsError(
        "FLOWPLATFORM_AUTO_PARTITION_MIN_ROWS must be 0 (never) or more, and "
        "FLOWPLATFORM_AUTO_PARTITION_ROWS 1 or more"
    )
# Longest node hard time limit; the visibility timeout must stay above it (docs/operations.md).
FLOWPLATFORM_NODE_MAX_TIME_LIMIT_S = env_int("FLOWPLATFORM_NODE_MAX_TIME_LIMIT_S", 3600)
CELERY_VISIBILITY_TIMEOUT_S = env_int(
    "CELERY_VISIBILITY_TIMEOUT_S", FLOWPLATFORM_NODE_MAX_TIME_LIMIT_S + 600
)
if CELERY_VISIBILITY_TIMEOUT_S <= FLOWPLATFORM_NODE_MAX_TIME_LIMIT_S:
    raise SettingsError(
        "CELERY_VISIBILITY_TIMEOUT_S must be above FLOWPLATFORM_NODE_MAX_TIME_LIMIT_S"
    )
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT_S}
# Reconnects to a Redis that is down give up within seconds: starting a run then fails fast.
_FAST_GIVE_UP = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT_S,
    "retry_policy": _FAST_GIVE_UP,
}
CELERY_TASK_TIME_LIMIT = FLOWPLATFORM_NODE_MAX_TIME_LIMIT_S
CELERY_BEAT_SCHEDULER = "scheduling.beat:GuardedScheduler"  # docs/scheduling.md
# Publishing to a broker that is down fails within seconds instead of hanging.
CELERY_BROKER_CONNECTION_TIMEOUT = env_int("CELERY_BROKER_CONNECTION_TIMEOUT", 3)
CELERY_TASK_PUBLISH_RETRY_POLICY = _FAST_GIVE_UP

# --- Fault tolerance (docs/operations.md, decision 0027) ---------------------------------------
# A process executing a node holds its lease for FLOWPLATFORM_LEASE_TTL_S and renews it every
# FLOWPLATFORM_HEARTBEAT_S; a lease not renewed in time is taken over (its worker died). The
# reaper looks every FLOWPLATFORM_REAPER_INTERVAL_S, so a run whose whole worker died goes on
# within about TTL + interval (20 s by default); a killed pool process is replaced at once.
FLOWPLATFORM_HEARTBEAT_S = env_int("FLOWPLATFORM_HEARTBEAT_S", 5)
FLOWPLATFORM_LEASE_TTL_S = env_int("FLOWPLATFORM_LEASE_TTL_S", 15)
# Pool processes keep Python's garbage collector settings instead of tuning them (decision 0010).
FLOWPLATFORM_GC_DEFAULTS = env_bool("FLOWPLATFORM_GC_DEFAULTS", False)
# A run with no node running and nothing done for this long has lost its messages.
FLOWPLATFORM_STALE_AFTER_S = env_int("FLOWPLATFORM_STALE_AFTER_S", 120)
# A node whose worker died this many times fails ("poison" node) instead of looping.
FLOWPLATFORM_MAX_WORKERS_LOST = env_int("FLOWPLATFORM_MAX_WORKERS_LOST", 3)
# A stalled run is re-dispatched at most this many times, then failed.
FLOWPLATFORM_MAX_REDISPATCHES = env_int("FLOWPLATFORM_MAX_REDISPATCHES", 3)
FLOWPLATFORM_REAPER_INTERVAL_S = env_int("FLOWPLATFORM_REAPER_INTERVAL_S", 5)
# A node still executing this long after its run was cancelled has its task terminated.
FLOWPLATFORM_CANCEL_GRACE_S = env_int("FLOWPLATFORM_CANCEL_GRACE_S", 5)
if FLOWPLATFORM_CANCEL_GRACE_S < 0:
    raise SettingsError("FLOWPLATFORM_CANCEL_GRACE_S must not be negative")
if FLOWPLATFORM_HEARTBEAT_S < 1 or FLOWPLATFORM_REAPER_INTERVAL_S < 1:
    raise SettingsError(
        "FLOWPLATFORM_HEARTBEAT_S and FLOWPLATFORM_REAPER_INTERVAL_S must be at least 1"
    )
if FLOWPLATFORM_LEASE_TTL_S <= 2 * FLOWPLATFORM_HEARTBEAT_S:
    raise SettingsError(
        "FLOWPLATFORM_LEASE_TTL_S must be more than twice FLOWPLATFORM_HEARTBEAT_S "
        "(a lease must outlive a missed heartbeat)"
    )
if FLOWPLATFORM_STALE_AFTER_S <= FLOWPLATFORM_LEASE_TTL_S:
    raise SettingsError("FLOWPLATFORM_STALE_AFTER_S must be more than FLOWPLATFORM_LEASE_TTL_S")
CELERY_BEAT_SCHEDULE = {
    "flowplatform-reap-stalled-runs": {
        "task": "flows.reap_stalled_runs",
        "schedule": float(FLOWPLATFORM_REAPER_INTERVAL_S),
    },
    "flowplatform-purge-audit": {"task": "audit.purge", "schedule": 24 * 3600.0},
}
CELERY_TIMEZONE = "UTC"

# --- Schedules (docs/scheduling.md) -----------------------------------------------------------
# Longest beat sleeps between looks at its schedule (0: the scheduler's default, 5 s).
CELERY_BEAT_MAX_LOOP_INTERVAL = env_int("CELERY_BEAT_MAX_LOOP_INTERVAL", 0)
# Queue of the schedule fire tasks (empty: the default queue); a small dedicated worker on it
# keeps runs starting on time while node tasks fill the other workers.
FLOWPLATFORM_SCHEDULE_QUEUE = env_str("FLOWPLATFORM_SCHEDULE_QUEUE", "")
# The Redis lease that keeps a single beat sending: a standby takes over within the TTL.
FLOWPLATFORM_BEAT_LOCK_URL = env_str("FLOWPLATFORM_BEAT_LOCK_URL", "")  # empty: the broker
FLOWPLATFORM_BEAT_LOCK_KEY = env_str("FLOWPLATFORM_BEAT_LOCK_KEY", "flowplatform:beat-lease")
FLOWPLATFORM_BEAT_LOCK_TTL_S = env_int("FLOWPLATFORM_BEAT_LOCK_TTL_S", 15)
if FLOWPLATFORM_BEAT_LOCK_TTL_S < 1:
    raise SettingsError("FLOWPLATFORM_BEAT_LOCK_TTL_S must be at least 1")

# --- Run slots (docs/triggers.md#routing-and-limits) -------------------------------------------
# Runs executing at once in all (0: no limit) and per queue ("heavy=2,default=10"; "default"
# names CELERY_TASK_DEFAULT_QUEUE); runs beyond wait queued and start as slots free.
FLOWPLATFORM_MAX_ACTIVE_RUNS = env_int("FLOWPLATFORM_MAX_ACTIVE_RUNS", 0)


def _queue_limits(value: str) -> dict[str, int]:
    limits: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, _, count = item.partition("=")
        if not name.strip() or not count.strip().isdigit() or int(count) < 1:
            raise SettingsError(
                f"FLOWPLATFORM_QUEUE_LIMITS: '{item}' is not QUEUE=COUNT (a count of 1 or more)"
            )
        queue = name.strip()
        limits[CELERY_TASK_DEFAULT_QUEUE if queue == "default" else queue] = int(count)
    return limits


FLOWPLATFORM_QUEUE_LIMITS = _queue_limits(env_str("FLOWPLATFORM_QUEUE_LIMITS", ""))
if FLOWPLATFORM_MAX_ACTIVE_RUNS < 0:
    raise SettingsError("FLOWPLATFORM_MAX_ACTIVE_RUNS must be 0 (no limit) or more")

# --- Triggers (docs/triggers.md) --------------------------------------------------------------
# File triggers watch file connections (FLOWPLATFORM_FILE_ROOTS above).
# How often beat looks for file triggers that are due (each polls at its own "every").
FLOWPLATFORM_FILE_POLL_S = env_int("FLOWPLATFORM_FILE_POLL_S", 15)
if FLOWPLATFORM_FILE_POLL_S < 1:
    raise SettingsError("FLOWPLATFORM_FILE_POLL_S must be at least 1")
CELERY_BEAT_SCHEDULE["flowplatform-poll-file-triggers"] = {
    "task": "scheduling.poll_files",
    "schedule": float(FLOWPLATFORM_FILE_POLL_S),
}
# Largest webhook body accepted, in bytes (413 above it).
FLOWPLATFORM_WEBHOOK_MAX_BYTES = env_int("FLOWPLATFORM_WEBHOOK_MAX_BYTES", 1024 * 1024)
# Calls a minute one webhook trigger accepts (429 above it) unless it sets rate_per_minute.
FLOWPLATFORM_WEBHOOK_RATE_PER_MINUTE = env_int("FLOWPLATFORM_WEBHOOK_RATE_PER_MINUTE", 600)
if FLOWPLATFORM_WEBHOOK_MAX_BYTES < 1 or FLOWPLATFORM_WEBHOOK_RATE_PER_MINUTE < 1:
    raise SettingsError(
        "FLOWPLATFORM_WEBHOOK_MAX_BYTES and FLOWPLATFORM_WEBHOOK_RATE_PER_MINUTE must be 1 or more"
    )

# --- Audit trail (docs/admin.md) ---------------------------------------------------------------
# Days an audit entry is kept; a daily beat task (and `manage.py purgeaudit`) deletes older ones.
# 0 keeps entries for ever.
FLOWPLATFORM_AUDIT_RETENTION_DAYS = env_int("FLOWPLATFORM_AUDIT_RETENTION_DAYS", 365)
if FLOWPLATFORM_AUDIT_RETENTION_DAYS < 0:
    raise SettingsError("FLOWPLATFORM_AUDIT_RETENTION_DAYS must be 0 (keep for ever) or more")

# --- Alerts (docs/operations.md#alerts) --------------------------------------------------------
# Where the platform is reached: the link to the run in an alert (empty: no link).
FLOWPLATFORM_BASE_URL = env_str("FLOWPLATFORM_BASE_URL", "").rstrip("/")
# A delivery is tried this many times, waiting BACKOFF s, then twice that, and so on (at most an hour).
FLOWPLATFORM_ALERT_MAX_ATTEMPTS = env_int("FLOWPLATFORM_ALERT_MAX_ATTEMPTS", 6)
FLOWPLATFORM_ALERT_RETRY_BACKOFF_S = env_int("FLOWPLATFORM_ALERT_RETRY_BACKOFF_S", 30)
FLOWPLATFORM_ALERT_TIMEOUT_S = env_int("FLOWPLATFORM_ALERT_TIMEOUT_S", 10)
# How often beat looks for late intervals, and how far back (a newly set SLA is not applied to
# the whole history).
FLOWPLATFORM_ALERT_LATE_CHECK_S = env_int("FLOWPLATFORM_ALERT_LATE_CHECK_S", 60)
FLOWPLATFORM_ALERT_LATE_LOOKBACK_S = env_int("FLOWPLATFORM_ALERT_LATE_LOOKBACK_S", 86400)
if FLOWPLATFORM_ALERT_MAX_ATTEMPTS < 1 or FLOWPLATFORM_ALERT_LATE_CHECK_S < 1:
    raise SettingsError(
        "FLOWPLATFORM_ALERT_MAX_ATTEMPTS and FLOWPLATFORM_ALERT_LATE_CHECK_S must be at least 1"
    )
CELERY_BEAT_SCHEDULE["flowplatform-alerts-late"] = {
    "task": "alerts.check_late",
    "schedule": float(FLOWPLATFORM_ALERT_LATE_CHECK_S),
}
# E-mail alerts go through Django's SMTP backend.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "flowplatform@localhost")
# --- Observability (docs/observability.md) ----------------------------------------------------
# Traces: configured by the standard OTEL_* variables only (flowplatform/telemetry.py).
# A link to a run's trace in the admin and the API, e.g. https://jaeger.example/trace/{trace_id}.
FLOWPLATFORM_TRACE_URL_TEMPLATE = env_str("FLOWPLATFORM_TRACE_URL_TEMPLATE", "")
if FLOWPLATFORM_TRACE_URL_TEMPLATE and "{trace_id}" not in FLOWPLATFORM_TRACE_URL_TEMPLATE:
    raise SettingsError("FLOWPLATFORM_TRACE_URL_TEMPLATE must contain {trace_id}")
# /metrics asks for `Authorization: Bearer <token>` when set (web, workers and beat).
FLOWPLATFORM_METRICS_TOKEN = env_str("FLOWPLATFORM_METRICS_TOKEN", "")
# A worker (and beat) serves /metrics on this port for all its pool processes; 0: not served.
FLOWPLATFORM_WORKER_METRICS_PORT = env_int("FLOWPLATFORM_WORKER_METRICS_PORT", 0)
if not 0 <= FLOWPLATFORM_WORKER_METRICS_PORT <= 65535:
    raise SettingsError("FLOWPLATFORM_WORKER_METRICS_PORT must be a port number (1-65535) or 0")
# /readyz gives the database and the broker this long to answer.
FLOWPLATFORM_READY_TIMEOUT_S = env_int("FLOWPLATFORM_READY_TIMEOUT_S", 2)
if FLOWPLATFORM_READY_TIMEOUT_S < 1:
    raise SettingsError("FLOWPLATFORM_READY_TIMEOUT_S must be at least 1")
# "json": one JSON object per log line (with run_id, node_key, flow, trace_id, span_id).
FLOWPLATFORM_LOG_FORMAT = env_str("FLOWPLATFORM_LOG_FORMAT", "plain").strip().lower()
if FLOWPLATFORM_LOG_FORMAT not in ("plain", "json"):
    raise SettingsError(
        f"FLOWPLATFORM_LOG_FORMAT must be plain or json, not {FLOWPLATFORM_LOG_FORMAT!r}"
    )

# --- Logging ---------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "flowplatform.logs.JsonFormatter"},
    },
    # Hides the connection secrets of node runs in progress (the worker's handlers get it too);
    # "run" adds the run, node and trace a line belongs to.
    "filters": {
        "redact": {"()": "nodes.redaction.RedactingFilter"},
        "run": {"()": "flowplatform.logs.RunContextFilter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": FLOWPLATFORM_LOG_FORMAT,
            "filters": ["redact", "run"],
        }
    },
    # Commands stay quiet by default; a worker's `--loglevel` sets the root level it runs at.
    "root": {"handlers": ["console"], "level": env_str("FLOWPLATFORM_LOG_LEVEL", "WARNING")},
}
