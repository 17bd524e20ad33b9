"""Settings from the environment, with defaults that run on a laptop (SQLite under var/, local Redis).

Production sets DEBUG=0, SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL and REDIS_URL; a missing
SECRET_KEY with DEBUG=0 stops the start instead of running with a known key.
"""
from __future__ import annotations

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

DEBUG = env.bool("DEBUG", default=True)
VAR_DIR = Path(env.str("MASKSEL_VAR_DIR", default=str(BASE_DIR / "var")))
SECRET_KEY = env.str("SECRET_KEY", default="")
# Keys copied from examples and documentation: with DEBUG=0 they are refused like a missing one.
PLACEHOLDER_KEYS = {"change-me", "changeme", "secret", "secret-key", "your-secret-key", "django-insecure",
                    "masksel-development-only-key-never-use-in-production"}
if not DEBUG and (not SECRET_KEY or SECRET_KEY.lower() in PLACEHOLDER_KEYS or len(SECRET_KEY) < 50):
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a random value of at least 50 characters when DEBUG=0 (not a placeholder); "
        "make one with: python -c \"import secrets; print(secrets.token_urlsafe(50))\"")
if not SECRET_KEY:
    SECRET_KEY = "masksel-development-only-key-never-use-in-production"
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "jobs",
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
]

ROOT_URLCONF = "webapp.urls"
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
            ],
        },
    },
]
WSGI_APPLICATION = None
ASGI_APPLICATION = "webapp.asgi.application"

DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # The web server and the worker write to the same file: WAL lets readers go on while one
    # writes, and IMMEDIATE transactions wait for the lock instead of failing half-way.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/runs/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every request without it
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
# Where uploaded data sets live: `file` (MEDIA_ROOT, the embedded default) or `s3` (any S3-compatible store,
# with django-storages' own setting names). A host reads a stored file through its local copy under
# MASKSEL_FILE_CACHE, a cache it may lose (`jobs/files.py`).
MASKSEL_STORAGE = env.str("MASKSEL_STORAGE", default="file")
if MASKSEL_STORAGE not in ("file", "s3"):
    raise ImproperlyConfigured(f"MASKSEL_STORAGE must be file or s3, got {MASKSEL_STORAGE!r}")
STORAGES = {
    "default": {"BACKEND": "storages.backends.s3.S3Storage" if MASKSEL_STORAGE == "s3"
                else "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
AWS_S3_ENDPOINT_URL = env.str("AWS_S3_ENDPOINT_URL", default=None)
AWS_STORAGE_BUCKET_NAME = env.str("AWS_STORAGE_BUCKET_NAME", default="masksel")
AWS_ACCESS_KEY_ID = env.str("AWS_ACCESS_KEY_ID", default=None)
AWS_SECRET_ACCESS_KEY = env.str("AWS_SECRET_ACCESS_KEY", default=None)
AWS_S3_REGION_NAME = env.str("AWS_S3_REGION_NAME", default=None)
AWS_S3_FILE_OVERWRITE = False  # a second upload never replaces the object of a first
# On S3, a run's files download from the bucket itself: the API answers with a redirect to a URL signed for
# MASKSEL_PRESIGNED_SECONDS (the endpoint must then be one the clients can reach); off, they stream through
# the web server.
MASKSEL_PRESIGNED_DOWNLOADS = env.bool("MASKSEL_PRESIGNED_DOWNLOADS", default=False)
MASKSEL_PRESIGNED_SECONDS = env.int("MASKSEL_PRESIGNED_SECONDS", default=600)
# A worker that cannot reach the storage mid-run gives the run back to the queue, to be tried again after
# this many seconds (it resumes from its last stored checkpoint); after MASKSEL_MAX_ATTEMPTS it fails.
MASKSEL_STORAGE_RETRY_SECONDS = env.int("MASKSEL_STORAGE_RETRY_SECONDS", default=30)
MASKSEL_FILE_CACHE = Path(env.str("MASKSEL_FILE_CACHE", default=str(VAR_DIR / "cache" / "files")))
# Zarr stores registered by URI (`POST /api/datasets/` with `uri`) must lie under one of these: local folders
# and `s3://bucket/prefix/` roots, comma-separated. Default: var/stores and, on S3 storage, the storage bucket's
# `datasets/` prefix. Nothing outside them is ever read for a user.
MASKSEL_DATA_ROOTS = env.list("MASKSEL_DATA_ROOTS", default=[str(VAR_DIR / "stores")] + (
    [f"s3://{AWS_STORAGE_BUCKET_NAME}/datasets/"] if MASKSEL_STORAGE == "s3" else []))
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024**2
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024**2
# Per-user limits (a clear message names the limit when one is reached).
MASKSEL_MAX_UPLOAD_BYTES = env.int("MASKSEL_MAX_UPLOAD_BYTES", default=512 * 1024**2)
MASKSEL_MAX_STORAGE_BYTES = env.int("MASKSEL_MAX_STORAGE_BYTES", default=20 * 1024**3)
MASKSEL_MAX_OPEN_RUNS = env.int("MASKSEL_MAX_OPEN_RUNS", default=100)

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # redis-py 8 caps a pool at 100 connections and fails past it; hundreds of viewers joining
        # a run at once each borrow one (group_add), so the web server gets a larger pool. It also
        # reads with a 5 s socket timeout, the same 5 s that channels_redis blocks in BZPOPMIN for:
        # on a busy machine the read lost that race and the consumer died with close code 1011.
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "max_connections": env.int("CHANNEL_MAX_CONNECTIONS", default=1000),
                       "socket_timeout": 30}],
            "prefix": env.str("CHANNEL_PREFIX", default="masksel"),
        },
    }
}

# Leases of running runs: a worker renews its lease every MASKSEL_HEARTBEAT_SECONDS; a run whose
# lease is older than MASKSEL_STALE_SECONDS is requeued (resuming from its checkpoint), at most
# MASKSEL_MAX_ATTEMPTS times in all.
MASKSEL_HEARTBEAT_SECONDS = env.float("MASKSEL_HEARTBEAT_SECONDS", default=5.0)
MASKSEL_STALE_SECONDS = env.float("MASKSEL_STALE_SECONDS", default=60.0)
MASKSEL_MAX_ATTEMPTS = env.int("MASKSEL_MAX_ATTEMPTS", default=3)
if MASKSEL_STALE_SECONDS < 2 * MASKSEL_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured("MASKSEL_STALE_SECONDS must be at least twice MASKSEL_HEARTBEAT_SECONDS")

CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_DEFAULT_QUEUE = env.str("MASKSEL_QUEUE", default="train")
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("MASKSEL_TASK_TIME_LIMIT", default=48 * 3600)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT + 3600}
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

REST_FRAMEWORK = {
    # Token first: an anonymous request gets 401 with `WWW-Authenticate: Token` (session auth alone gives 403).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # DRF's JSON parser, with a body nested too deeply for Python's decoder a 400 too (`jobs.parsers`).
    "DEFAULT_PARSER_CLASSES": ["jobs.parsers.JSONParser", "rest_framework.parsers.FormParser",
                               "rest_framework.parsers.MultiPartParser"],
    "EXCEPTION_HANDLER": "jobs.api_errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "masksel API",
    # Markdown: paths in code spans, where a bare <id> would be read as a tag and vanish.
    "DESCRIPTION": "Upload data sets, submit mask-learning runs, follow them and download masks and models. "
                   "Errors are `{\"error\": \"...\"}` with a 4xx status. Live progress: the websocket "
                   "`/ws/runs/<run_id>/`.",
    "VERSION": "1",
    # Swagger UI's files come from the drf-spectacular-sidecar wheel: the docs page works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],  # like every other endpoint
}

SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=SECURE_HSTS_SECONDS > 0)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
if env.bool("BEHIND_TLS_PROXY", default=False):
    # The proxy terminates TLS and says so; without this Django would think every request is plain HTTP.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
