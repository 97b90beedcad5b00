"""Paidan settings: one file, production differences are environment switches.

Nothing set → the embedded default (SQLite, in-process Celery worker and beat, in-memory
channel layer). DATABASE_URL and REDIS_URL set → PostgreSQL with a psycopg pool, Redis as
Celery broker and channel layer, django-celery-beat's database scheduler.
"""

from pathlib import Path

import dj_database_url
from django.utils.translation import gettext_lazy as _

from config.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DJANGO_DEBUG", default=False)
EMBEDDED_SECRET_KEY = "paidan-embedded-insecure-key-change-me"  # noqa: S105 - published on purpose, refused below
SECRET_KEY = env_str("DJANGO_SECRET_KEY") or (
    # Only the embedded default may run without a secret; production must set one.
    EMBEDDED_SECRET_KEY if not env_str("DATABASE_URL") else ""
)
if env_str("DATABASE_URL") and SECRET_KEY in ("", EMBEDDED_SECRET_KEY, "change-me-to-a-long-random-string"):
    from django.core.exceptions import ImproperlyConfigured

    # The published keys (this file's, .env.example's) would let anyone forge sessions.
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY must be set to a long random value of your own when DATABASE_URL is set"
    )

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
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
    "django_celery_beat",
    "channels",
    "orders",
    "agents",
    "dispatch",
    "riskcontrol",
    "dashboards",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    # A request the database failed under: 503 with Retry-After, in the request's language.
    "config.middleware.DatabaseUnavailableMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.middleware.OneThreadMiddlewareStack",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
EMBEDDED = not DATABASE_URL
if DATABASE_URL:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=0)
    if _db["ENGINE"] == "django.db.backends.postgresql":
        # Without a pool daphne opens a new connection per request (NOTES.md: 51 vs 116 req/s).
        # Pooled connections die with a database restart; this backend checks each before use
        # and replaces all the dead ones at once (config/postgresql/base.py says why not
        # CONN_HEALTH_CHECKS). Unchecked, the next requests and tasks each fail on one.
        _db["ENGINE"] = "config.postgresql"
        _db.setdefault("OPTIONS", {})["pool"] = {
            "min_size": env_int("DB_POOL_MIN", 2),
            "max_size": env_int("DB_POOL_MAX", 20),
            "timeout": env_int("DB_POOL_TIMEOUT", 10),
        }
        # A worker killed mid-tick leaves its session holding the pool entries it claimed FOR
        # UPDATE. Blocked on a lock, a backend notices its dead client only once the lock is
        # granted, and every sweep skips those orders until then. Polling the socket while a
        # query runs ends such a session within DB_CLIENT_CHECK_MS (test_worker_kill.py);
        # keepalives make a vanished host's socket count as closed after ~25 s. 0 leaves them
        # out, for a pooler or a managed server that refuses startup options.
        if _check_ms := env_int("DB_CLIENT_CHECK_MS", 5000):
            _checks = f"-c client_connection_check_interval={_check_ms} -c tcp_keepalives_idle=10"
            _checks += " -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"
            _db["OPTIONS"]["options"] = f"{_db['OPTIONS'].get('options', '')} {_checks}".strip()
    DATABASES = {"default": _db}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH", str(BASE_DIR / "var" / "paidan.sqlite3")),
            # The embedded worker and beat threads write beside the web threads. IMMEDIATE
            # takes the write lock when a transaction begins, so a second writer waits out
            # `timeout` instead of failing at once with "database is locked" (WAL upgrade).
            "OPTIONS": {
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL;",
                "transaction_mode": "IMMEDIATE",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: Celery broker and channel layer --------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    from redis.asyncio.retry import Retry  # channels-redis's client is redis.asyncio's
    from redis.backoff import NoBackoff

    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 defaults socket_timeout to 5 s, the same as channels-redis's
                # blocking pop: idle websockets die with TimeoutError (channels_redis #422).
                # One immediate retry on a fresh connection: after Redis restarts, the pooled
                # connections are dead and, without it, the first board socket to connect
                # again and the first pushes failed on them (tests/chaos/test_redis_down.py).
                "hosts": [{"address": REDIS_URL, "socket_timeout": None, "retry": Retry(NoBackoff(), 1)}],
                # Past capacity channels-redis drops group messages silently (default 100);
                # it bounds each daphne process's inbox. Publishers coalesce ids (one message
                # per group per send batch) and daphne drains ~350 messages/s: a burst of
                # 3,000 sent ten at a time peaked near 850 queued, fifty at a time near 1,500,
                # and all arrived (tests/test_board_e2e.py). Boards re-read on reconnect.
                "capacity": env_int("CHANNEL_CAPACITY", 2000),
                "expiry": 60,
            },
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
    # The shared cache (rate-limit counters) on Redis. A cache is never a reason to fail a
    # request: with Redis down django-redis logs and answers "miss", so limits fail open
    # while orders keep being stored.
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "paidan",
            "OPTIONS": {
                "IGNORE_EXCEPTIONS": True,
                "SOCKET_CONNECT_TIMEOUT": 1,
                "SOCKET_TIMEOUT": 1,
            },
        }
    }
    DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # The embedded server runs a Celery worker and beat in threads over this broker.
    CELERY_BROKER_URL = "memory://"
    CELERY_BEAT_SCHEDULER = "celery.beat:Scheduler"

CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
# Enqueueing happens after commit inside requests, and a task that cannot be sent is redone by
# a sweep (the database is the truth), so with the broker gone an enqueue must fail fast, not
# hold the request: Celery's default policy retries three times 0.2 s apart (every request
# took ~0.65 s with Redis stopped), and without socket timeouts a hung Redis (SIGSTOP, lost
# packets) held it for good. One immediate retry still rides out a dropped connection. Now,
# Redis stopped: requests take 0.03 s as when it is up (tests/chaos/test_redis_down.py);
# Redis frozen: an enqueue gives up after 2 s (two tries of 1 s).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 3600,
    "socket_connect_timeout": 1,
    "socket_timeout": 1,
}
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0,
    "interval_max": 0,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The same zone as TIME_ZONE: beat re-syncs crontabs in this zone at start-up, and
# install_schedules writes them in TIME_ZONE; two zones would flip the daily run's hour.
CELERY_TIMEZONE = env_str("TIME_ZONE", "Asia/Shanghai")

# --- Auth, API --------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboards:order_list"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    # Documents each operation's error answers from its view (config/openapi.py).
    "DEFAULT_SCHEMA_CLASS": "config.openapi.PaidanAutoSchema",
    "EXCEPTION_HANDLER": "orders.apis.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Paidan API",
    "DESCRIPTION": "Order dispatch and exception hub: ingest, read and move orders.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Every client (our pages, integrations) sends JSON; DRF's form parsers stay on but are not
    # the documented API, and nested orders cannot be form-encoded anyway.
    "PARSER_WHITELIST": ["rest_framework.parsers.JSONParser"],
    # The signed webhook is a plain Django view; config/openapi.py documents it.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.openapi.document_webhook",
    ],
    # The docs page must work without the internet: Swagger UI from our own static files.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several models have a `state`, `status` or `kind`: name each choice set after its model.
    "ENUM_NAME_OVERRIDES": {
        "OrderKindEnum": "orders.models.Order.Kind",
        "ReviewStateEnum": "riskcontrol.models.Review.State",
        "AgentStatusEnum": "agents.models.Agent.Status",
    },
}

# A batch of 1,000 orders is ~1 MB of JSON; anything far beyond is refused with 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_REQUEST_BYTES", 5 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
IMPORT_MAX_UPLOAD_BYTES = env_int("IMPORT_MAX_UPLOAD_BYTES", 200 * 1024 * 1024)
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "var" / "media")))

# --- Webhooks ---------------------------------------------------------------------------
WEBHOOK_TOLERANCE_SECONDS = env_int("WEBHOOK_TOLERANCE_SECONDS", 300)
# Signed webhooks per channel (orders/throttles.py; empty: no limit). The seeds' biggest shop
# takes ~98,000 orders on its peak day (~1/s on average, a few per second at the busiest hour);
# one daphne ingests ~100/s (NOTES.md), so 100/s only stops a runaway or replaying sender.
WEBHOOK_RATE = env_str("WEBHOOK_RATE", "100/s")

# --- Failed sign-ins (dashboards/login_limits.py), per fixed window ---------------------
# Five tries per username leave room for typos and cost a guesser 15 minutes per five; thirty
# per address let an office behind one NAT mistype without locking everyone in it out.
LOGIN_FAILURES_PER_USERNAME = env_int("LOGIN_FAILURES_PER_USERNAME", 5)
LOGIN_FAILURES_PER_IP = env_int("LOGIN_FAILURES_PER_IP", 30)
LOGIN_FAILURE_WINDOW_SECONDS = env_int("LOGIN_FAILURE_WINDOW_SECONDS", 15 * 60)

# --- i18n, time -------------------------------------------------------------------------
LANGUAGE_CODE = env_str("LANGUAGE_CODE", "zh-hans")
LANGUAGES = [("zh-hans", _("Simplified Chinese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("TIME_ZONE", "Asia/Shanghai")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"
STATICFILES_DIRS = [
    BASE_DIR / "static",
    # Browser libraries installed by npm (package.json, `make`), served as they ship, never
    # copied into the repository.
    ("vendor/sortablejs", BASE_DIR / "node_modules" / "sortablejs"),
    # Only the built bundles: WhiteNoise indexes every file here when a handler starts (1,347
    # files in the whole package cost ~80 ms per start, and every test client is a start).
    ("vendor/echarts", BASE_DIR / "node_modules" / "echarts" / "dist"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# --- Production switches ----------------------------------------------------------------
SECURE_COOKIES = env_bool("SECURE_COOKIES", default=not EMBEDDED)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
# Only sent with SECURE_HSTS_SECONDS > 0. includeSubDomains covers hosts under this site's own
# name (*.paidan.example.com), not its parent domain; preload only marks the header as eligible
# (listing is a separate, manual submission). Off switches for deployments that need them.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=True)

# Risk screening of every ingested order (riskcontrol). Off only for benchmarks' baselines.
RISK_SCREENING = env_bool("RISK_SCREENING", default=True)

# The overdue ladder (orders.escalation): minutes between L1 (owner told), L2 (handed to the
# backup) and L3 (supervisor by e-mail and SMS), as seed 004 has it.
SLA_ESCALATION_STEP_MINUTES = env_int("SLA_ESCALATION_STEP_MINUTES", 5)

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", default=False)
# A mail server that hangs costs one retry of one notification, not a stuck worker.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "paidan@localhost")

# --- Notifications (dashboards.backends) ------------------------------------------------
# A dotted path: the logging backend writes texts to the log (embedded default);
# dashboards.backends.HttpGatewaySmsBackend POSTs {"to", "text"} to SMS_GATEWAY_URL.
SMS_BACKEND = env_str("SMS_BACKEND", "dashboards.backends.LoggingSmsBackend")
SMS_GATEWAY_URL = env_str("SMS_GATEWAY_URL")
SMS_GATEWAY_TOKEN = env_str("SMS_GATEWAY_TOKEN")

# Where people reach this site: links in e-mails, SMS and WeCom messages.
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
