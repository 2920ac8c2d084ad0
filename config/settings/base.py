"""Settings shared by every environment. Values come from the environment with
embedded defaults that need no server (SQLite, a filesystem broker, an in-process chain)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF

from config.processes import web_workers
from config.settings.env import env_bool, env_decimal, env_int, env_list, env_names_read, env_str
from core.logging import logging_config
from core.platform import platform_key_prefix

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))

SECRET_KEY = env_str("DJANGO_SECRET_KEY", "insecure-local-development-key-not-for-production")
# Earlier secret keys (comma-separated) still accepted while a rotation runs: what they
# signed (sessions, tokens, password reset links, the engine's commands) stays valid and what
# they encrypted (API keys' secrets) readable; new signatures use SECRET_KEY
# (docs/security.md, "Rotating the secret key").
SECRET_KEY_FALLBACKS = env_list("DJANGO_SECRET_KEY_FALLBACKS")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
# The order ticket posted after the session expired says so instead of the 403 page.
CSRF_FAILURE_VIEW = "orders.views.csrf_failure"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework_simplejwt",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "django_htmx",
    "csp",
    "django_prometheus",
    "django_celery_beat",
    "axes",
    "core",
    "accounts",
    "orders",
    "revenue",
    "flywheel",
]

MIDDLEWARE = [
    "core.middleware.TrustedProxyMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Early, so the answers of the middleware below (a 400, a redirect) carry the policy too.
    "csp.middleware.CSPMiddleware",
    "core.middleware.CorrelationIdMiddleware",
    "core.middleware.NulByteMiddleware",
    "core.middleware.PrivateApiCacheMiddleware",
    "core.middleware.CanonicalSlashMiddleware",
    "core.middleware.ApiDebugErrorMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Answers a locked-out login at a door that does not answer it itself (the admin's form).
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
# core.middleware.CanonicalSlashMiddleware redirects both ways (and the admin's paths too).
APPEND_SLASH = False
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
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
# DATABASE_URL=postgres://... switches to PostgreSQL. The embedded default is SQLite
# with IMMEDIATE transactions, so concurrent writers wait for each other (busy
# timeout) instead of failing with "database is locked" on lock upgrade.
SQLITE_PATH = VAR_DIR / "db.sqlite3"
DATABASE_URL = env_str("DATABASE_URL", "")


def database_config(url: str) -> dict[str, object]:
    if url:
        config: dict[str, object] = dict(dj_database_url.parse(url, conn_max_age=env_int("DB_CONN_MAX_AGE", 60)))
        config["CONN_HEALTH_CHECKS"] = True
        return config
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": SQLITE_PATH,
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }


DATABASES = {"default": database_config(DATABASE_URL)}
# The web process (core.asgi) closes each request's connection at its end, whatever
# DB_CONN_MAX_AGE says: under ASGI every request runs in a thread of its own.
WEB_CONNECTIONS_PER_REQUEST = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Two platforms on one server (docs/operations.md) ---------------------------------
# This platform's keys in Redis (the cache's and the Celery broker's) start with this, so
# that another platform on the same Redis database (staging beside production) neither
# reads its counters and claims nor takes its tasks. PLATFORM_KEY_PREFIX, else derived from
# the database (core.platform); empty: no prefix.
PLATFORM_KEY_PREFIX = platform_key_prefix(DATABASES["default"])

# --- Cache (API rate limits, delivery debounce, failure-log cap) ---------------------
# Shared by every process: Redis with REDIS_URL; without it, a table of the database
# (core.cache.AtomicDatabaseCache: atomic add and incr across processes), created by
# `migrate` (core.0001_cache_table). Never a per-process memory cache: each
# gunicorn worker would count its own share of every limit.
REDIS_URL = env_str("REDIS_URL", "")
CACHE_TABLE = "platform_cache"
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": PLATFORM_KEY_PREFIX,
        }
        if REDIS_URL
        else {"BACKEND": "core.cache.AtomicDatabaseCache", "LOCATION": CACHE_TABLE, "OPTIONS": {"MAX_ENTRIES": 100_000}}
    )
}
# The database cache's expired entries and the expired sessions are deleted by this beat task
# this often (core.tasks.expired_entries_delete; read when `migrate` schedules it). Above
# MAX_ENTRIES every write of the cache deletes the expired entries too; live ones never go
# (core.cache.AtomicDatabaseCache: they are replay claims, rate-limit windows, locks).
EXPIRED_ENTRIES_DELETE_INTERVAL_SECONDS = env_int("EXPIRED_ENTRIES_DELETE_INTERVAL_SECONDS", 3600, minimum=1)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes first: it refuses a locked-out login before any password is compared.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Content-Security-Policy (django-csp; docs/security.md, "Content-Security-Policy") ---
# Every answer but /api/'s: JSON needs none, the API docs pages set their own
# (core.views.docs_page), and the order fast path (core.api.fast) need not reproduce it.
# The pages run only the project's own files: no inline script or style, no eval (htmx's
# allowEval is off), nothing from another host.
# 'self' in connect-src covers the streams' ws:// and wss:// to the page's own host (CSP3).
# The chart's TradingView logo: Lightweight Charts (5.2.1) adds a <style> of its own for it,
# allowed by its hash, that text and no other (a new version's is refused, and
# tests/pages/test_browser_csp.py says so).
CHART_LOGO_STYLE = "'sha256-3pRED1tOXas1FXFoPb9TGCjmYe9XQsmO9OV23khV2nY='"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, CHART_LOGO_STYLE],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
    "EXCLUDE_URL_PREFIXES": ["/api/"],
}

# --- API -------------------------------------------------------------------
REST_FRAMEWORK = {
    "VIEW_DESCRIPTION_FUNCTION": "core.api.schema.view_description",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.PlatformJWTAuthentication",
        "accounts.api_key_auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.api.parsers.JsonParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.api.exception_handler.envelope_exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "orders": env_str("ORDER_RATE_LIMIT", "6000/min"),
        # Cancels, per user, a count of their own: a trader at its order rate can still pull
        # its orders; a flood of cancels cannot fill the engine's batches.
        "cancels": env_str("CANCEL_RATE_LIMIT", "6000/min"),
        "register": env_str("REGISTER_RATE_LIMIT", "30/hour"),
        # Password reset mails asked for, per client address and per address asked about.
        "password_reset": env_str("PASSWORD_RESET_RATE_LIMIT", "10/hour"),
        "password_reset_email": env_str("PASSWORD_RESET_EMAIL_RATE_LIMIT", "3/hour"),
    },
    "COERCE_DECIMAL_TO_STRING": True,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Trading platform API",
    "DESCRIPTION": "Orders, markets, wallets, flywheel and staff operations. Errors use one envelope.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and Redoc from the project's own static files (drf-spectacular-sidecar,
    # served by WhiteNoise): the docs work offline and no request leaves the host.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Every operation documents the error envelope for the statuses it can answer.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.api.schema.error_responses_hook",
    ],
}
# The order rate is counted in each web process (core.api.throttling): each allows this
# share of it. Default: the web processes gunicorn runs (config.processes: WEB_WORKERS, else
# one per core).
ORDER_RATE_WORKERS = env_int("ORDER_RATE_WORKERS", web_workers())
# Rows of refresh tokens past their expiry are deleted by this beat task this often
# (accounts.tasks.refresh_tokens_expired_flush; read when `migrate` schedules it).
REFRESH_TOKENS_FLUSH_INTERVAL_SECONDS = env_int("REFRESH_TOKENS_FLUSH_INTERVAL_SECONDS", 3600, minimum=1)
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 15, minimum=1)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env_int("JWT_REFRESH_DAYS", 7, minimum=1)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "SIGNING_KEY": SECRET_KEY,
    # Verified with SIGNING_KEY, then with SECRET_KEY_FALLBACKS (accounts.jwt).
    "AUTH_TOKEN_CLASSES": ("accounts.jwt.PlatformAccessToken",),
    # Clocks a few seconds apart (another web host's, this one's stepped back by NTP): a
    # token's `iat` in this host's near future is not refused as "not yet valid"; its expiry
    # is as many seconds later (docs/security.md).
    "LEEWAY": timedelta(seconds=env_int("JWT_LEEWAY_SECONDS", 5)),
}

# --- Failed logins (accounts/login_throttle.py, docs/security.md) ------------------
# One policy for the API token endpoint, the /login page and /admin/login/: failures per
# (username, client address) lock that pair out; failures per client address across
# usernames, at a higher limit, lock the address out. A series ends the window after its
# last failure. Counted in the database (django-axes), shared by every process.
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
LOGIN_ADDRESS_FAILURE_LIMIT = env_int("LOGIN_ADDRESS_FAILURE_LIMIT", 20, minimum=1)
LOGIN_FAILURE_WINDOW_SECONDS = env_int("LOGIN_FAILURE_WINDOW_SECONDS", 300)
AXES_HANDLER = "accounts.login_throttle.LoginThrottleHandler"
AXES_FAILURE_LIMIT = "accounts.login_throttle.failure_limit"
AXES_COOLOFF_TIME = "accounts.login_throttle.failure_window"
AXES_USERNAME_CALLABLE = "accounts.login_throttle.folded_username"
AXES_CLIENT_IP_CALLABLE = "accounts.login_throttle.client_ip_address"  # an IPv6 address by its /64
AXES_LOCKOUT_CALLABLE = "accounts.login_throttle.lockout_response"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
AXES_RESET_ON_SUCCESS = True  # clears the (username, address) count only (the handler)
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False  # refused attempts are not counted
AXES_DISABLE_ACCESS_LOG = True  # successful logins are not recorded; failures are
AXES_VERBOSE = False
# A failure is recorded with the form's fields (the admin shows them under Axes → Access
# attempts); axes masks `password` and these. The password page's new password (then set with
# the right present one) and the forms' CSRF tokens were stored in clear.
AXES_SENSITIVE_PARAMETERS = [
    "username",  # axes' default: a password typed in the wrong field
    "ip_address",
    "new_password",
    "new_password_confirm",
    "password_confirm",
    "new_password1",
    "new_password2",
    "password1",
    "password2",
    "csrfmiddlewaretoken",
]

# --- API keys and signed requests (accounts/api_keys.py, docs/api.md) -------------------
# A signed request's X-API-TIMESTAMP may be this far from the server's clock, either way.
API_SIGNATURE_WINDOW_MS = env_int("API_SIGNATURE_WINDOW_MS", 5000)
# Where used signatures are claimed: "auto" is the cache when it is shared (Redis), else
# the database (the embedded default's cache is per process); "cache" or "database" force one.
API_REPLAY_STORE = env_str("API_REPLAY_STORE", "auto")
# Fernet keys (comma-separated; the first encrypts, all decrypt) for the secrets at rest.
# Empty: derived from SECRET_KEY (and SECRET_KEY_FALLBACKS).
API_KEY_ENCRYPTION_KEYS = env_list("API_KEY_ENCRYPTION_KEYS")
API_KEYS_PER_USER_MAX = env_int("API_KEYS_PER_USER_MAX", 20)

# --- Proxies and operations -----------------------------------------------------
# Addresses or CIDR blocks of the reverse proxies in front of the web processes: only
# their X-Forwarded-For / X-Forwarded-Proto are believed (core.middleware). Empty: the
# clients connect directly and every forwarded header is ignored.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES")
# /metrics answers a scraper that sends `Authorization: Bearer <METRICS_TOKEN>` or that
# connects from METRICS_ALLOWED_NETWORKS (docs/security.md).
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
METRICS_ALLOWED_NETWORKS = env_list("METRICS_ALLOWED_NETWORKS", "127.0.0.0/8,::1")

# --- Trading ----------------------------------------------------------------
MAKER_FEE_BPS = env_int("MAKER_FEE_BPS", 8)
TAKER_FEE_BPS = env_int("TAKER_FEE_BPS", 12)
MAX_MARKET_SLIPPAGE_BPS = env_int("MAX_MARKET_SLIPPAGE_BPS", 500)
AUTO_FILL_ENABLED = env_bool("AUTO_FILL_ENABLED", True)
AUTO_FILL_SLIPPAGE_PERCENT = env_decimal("AUTO_FILL_SLIPPAGE_PERCENT", "0.5")
MAX_AUTO_FILL_USD = env_decimal("MAX_AUTO_FILL_USD", "500")
# A reference price set by staff within this of the reference or the last price (a ratio either
# way), unless confirmed (`large_move`): a mistyped one prices the house's fills at once.
REFERENCE_PRICE_MAX_MOVE_PERCENT = env_decimal("REFERENCE_PRICE_MAX_MOVE_PERCENT", "50")
HOUSE_USERNAME = env_str("HOUSE_USERNAME", "house")
FEE_ACCOUNT_USERNAME = env_str("FEE_ACCOUNT_USERNAME", "platform-fees")
TTX_ASSET = env_str("TTX_ASSET", "TTX")
# Accounts deactivated without the admin's action (a bare save(), a bulk update) or while no
# engine answered: their live orders are cancelled by this beat task at most this late
# (orders.tasks.inactive_orders_sweep; read when `migrate` schedules it, as the delivery's).
INACTIVE_ORDERS_SWEEP_INTERVAL_SECONDS = env_int("INACTIVE_ORDERS_SWEEP_INTERVAL_SECONDS", 60, minimum=1)
# Trade outbox rows revenue has consumed are deleted once this many days old (the trades and
# their revenue events stay), by this beat task this often (orders.tasks.trade_outbox_prune;
# the interval read when `migrate` schedules it). docs/operations.md, "Retention".
TRADE_OUTBOX_RETENTION_DAYS = env_int("TRADE_OUTBOX_RETENTION_DAYS", 7, minimum=1)
TRADE_OUTBOX_PRUNE_INTERVAL_SECONDS = env_int("TRADE_OUTBOX_PRUNE_INTERVAL_SECONDS", 3600, minimum=1)

# --- The matching engine (docs/matching.md, "The sequencer") ---------------------
# "zmq": engine processes (manage.py engine) own the books; web workers send commands.
# "inprocess": the sequencer runs inside the calling process (tests, one-process tools).
ENGINE_TRANSPORT = env_str("ENGINE_TRANSPORT", "zmq")
ENGINE_BATCH_MAX = env_int("ENGINE_BATCH_MAX", 200, minimum=1)  # commands per batch transaction
# How long a batch may wait for the clients the previous one answered (group commit, at
# most this long after the previous batch ended: orders.sequencer.server; 0: off). Clients
# that send again within it share one batch, its dozen round trips and its COMMIT, instead
# of taking turns in two (docs/performance.md, "Waiting for the clients just answered").
ENGINE_BATCH_LINGER_SECONDS = float(env_decimal("ENGINE_BATCH_LINGER_SECONDS", "0.006"))
# PostgreSQL: a batch of at least this many commands has its writes and COMMIT sent without
# waiting; the next batch is applied meanwhile and checked once it has landed (0: never;
# Sequencer.run, docs/matching.md). Smaller batches would only wait longer for their answers.
ENGINE_OVERLAP_MIN_COMMANDS = env_int("ENGINE_OVERLAP_MIN_COMMANDS", 50)
# PostgreSQL: the batch's statements (a fixed few, whatever the batch's size) are prepared
# once per connection and then only executed: planning them again was a quarter to a third
# of the server's CPU for a batch of a few commands (docs/performance.md, "Prepared
# statements"). Off (0) behind a transaction-pooling proxy that cannot carry protocol-level
# prepared statements (PgBouncer before 1.21, or without max_prepared_statements).
ENGINE_PREPARED_STATEMENTS = env_bool("ENGINE_PREPARED_STATEMENTS", True)
# A batch takes milliseconds; an engine that has not answered in 2 s is taken for dead
# (its commands are lost with it, never half-applied): 503, and the client retries.
ENGINE_ANSWER_TIMEOUT_SECONDS = float(env_decimal("ENGINE_ANSWER_TIMEOUT_SECONDS", "2"))
# A leader that stopped coming round its loop (a frozen process, a paused VM, a loop hung on
# a lock) is taken over (PostgreSQL): a standby ends its sessions once its lock session has
# been idle this long (the loop checks it every half second; a batch longer than the web
# workers' 2 s wait has failed its clients anyway; 0: never). orders.sequencer.leadership.
ENGINE_LEADER_SILENT_SECONDS = float(env_decimal("ENGINE_LEADER_SILENT_SECONDS", "2"))
# manage.py engine exits (every thread's traceback in its log, status 1) when its leading
# loop has not come round for this long (0: never): a hung engine is restarted by its
# supervisor instead of holding its endpoint. orders.sequencer.server.
ENGINE_WATCHDOG_SECONDS = float(env_decimal("ENGINE_WATCHDOG_SECONDS", "5"))
# Shards: name=MARKET,...|*@endpoint,...;... (orders.sequencer.shards). Embedded default: one
# engine for every market on a local socket.
ENGINE_SHARDS = env_str("ENGINE_SHARDS", f"main=*@ipc://{VAR_DIR}/engine-main.sock")

# --- Streams (docs/streams.md) ----------------------------------------------------
# Channel layer: each web process's memory. The engine publishes one message per batch
# (STREAMS_RELAY: Redis pub/sub when there is a Redis, across processes and hosts, else a
# ZeroMQ PUB socket); every web process subscribes and fans it out into its own layer
# (orders.streams.relay).
CHANNEL_LAYERS = {"default": {"BACKEND": "orders.streams.layer.StreamChannelLayer", "CONFIG": {"capacity": 1000}}}
# "off": the engine publishes nothing (the pages then poll; subscribers get snapshots only).
# "layer": group_send into this process's channel layer (an engine running in the web process).
STREAMS_RELAY = env_str("STREAMS_RELAY", "redis" if REDIS_URL else "zmq")
# zmq relay: the engine binds STREAMS_ZMQ_BIND (default: the first endpoint); web processes
# subscribe to every endpoint (one per engine that publishes).
STREAMS_ZMQ_ENDPOINTS = env_str("STREAMS_ZMQ_ENDPOINTS", f"ipc://{VAR_DIR}/streams-main.sock")
STREAMS_ZMQ_BIND = env_str("STREAMS_ZMQ_BIND", "")
# Open stream connections of one client address to one web process; beyond it the handshake
# is refused (close code 1013). A browser tab holds one (orders.streams.consumers).
STREAMS_MAX_CONNECTIONS_PER_ADDRESS = env_int("STREAMS_MAX_CONNECTIONS_PER_ADDRESS", 100)

# --- Revenue ------------------------------------------------------------------
REVENUE_HOLDER_PERCENTAGE = env_decimal("REVENUE_HOLDER_PERCENTAGE", "0.15")
REVENUE_RESERVE_PERCENTAGE = env_decimal("REVENUE_RESERVE_PERCENTAGE", "0.85")
TTX_CIRCULATING_SUPPLY = env_decimal("TTX_CIRCULATING_SUPPLY", "500000000")

# --- Chain ----------------------------------------------------------------------
WEB3_PROVIDER_URI = env_str("WEB3_PROVIDER_URI", "")  # empty: in-process eth-tester chain
CHAIN_SIGNER_PRIVATE_KEY = env_str("CHAIN_SIGNER_PRIVATE_KEY", "")
CHAIN_CONFIRMATIONS = env_int("CHAIN_CONFIRMATIONS", 2)
# A delivery is re-checked against the canonical chain until its block is final: the node's
# `finalized` block, or (nodes without that tag, or CHAIN_FINALITY_USE_TAG off) this deep.
CHAIN_FINALITY_DEPTH = env_int("CHAIN_FINALITY_DEPTH", 64)
CHAIN_FINALITY_USE_TAG = env_bool("CHAIN_FINALITY_USE_TAG", True)

# --- Celery -----------------------------------------------------------------------
# CELERY_BROKER_URL=redis://... switches to Redis; the default filesystem transport
# needs no server: worker, beat and web exchange messages through files under var/. Its
# host is named (a URL without one has kombu warn at every process's start that it took
# "localhost").
EMBEDDED_BROKER_URL = "filesystem://localhost/"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", EMBEDDED_BROKER_URL)
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = (
    {
        "data_folder_in": str(BROKER_DIR / "out"),
        "data_folder_out": str(BROKER_DIR / "out"),
        "processed_folder": str(BROKER_DIR / "processed"),
        # Exchange tables; kombu's default is ./control in the working directory.
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem")
    else {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600)}
)
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) and PLATFORM_KEY_PREFIX:
    # kombu's prefix of every key and pub/sub channel of the transport (queues "celery" and
    # "chain", their bindings, the unacknowledged messages, the workers' control): another
    # platform's worker on the same Redis database never takes this one's tasks.
    CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = f"{PLATFORM_KEY_PREFIX}:"
CELERY_BROKER_CONNECTION_TIMEOUT = 2.0
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
# django-celery-beat's, whose interval tasks survive the beat host's clock stepping back (core.beat).
CELERY_BEAT_SCHEDULER = "core.beat:DatabaseScheduler"
# Idempotent tasks only: acknowledge after running, requeue if the worker dies.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 120)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 180)
# Publishing must never hang a request when the broker is down: retry briefly, then
# leave the work to the periodic sweep.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2}

# --- Mail and alerts ---------------------------------------------------------------
ADMINS = [("Platform admins", addr) for addr in env_list("DJANGO_ADMINS_EMAILS", "admins@localhost")]
# Until an SMTP backend is configured, a message is one log line (core.mail): Django's
# console backend wrote many plain-text lines to stdout, through the JSON logs.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "core.mail.LogEmailBackend")
# The SMTP server of django.core.mail.backends.smtp.EmailBackend (Django's defaults:
# localhost:25, no login, no TLS). They were not read: EMAIL_HOST=smtp.example.com set beside
# the SMTP backend was ignored and every mail (reset links, alerts, error reports) was sent to
# port 25 of the host itself.
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT_SECONDS", 10)
# Error reports (mail to ADMINS on a 5xx) list the settings: hide every URL and URI as well
# as Django's secret names, since DATABASE_URL, CELERY_BROKER_URL, REDIS_URL, WEB3_PROVIDER_URI
# and ALERT_WEBHOOK_URL carry passwords, API keys and tokens (core.error_reports).
DEFAULT_EXCEPTION_REPORTER_FILTER = "core.error_reports.SettingsSafeExceptionReporterFilter"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "platform@localhost")
# Which platform a mail to ADMINS (error reports, delivery alerts) or an alert's webhook body
# ("platform") comes from, where several share their recipients (staging beside production).
# Empty: Django's "[Django] " subjects and no "platform" in the webhook body. Production: the
# first of DJANGO_ALLOWED_HOSTS by default.
PLATFORM_NAME = env_str("PLATFORM_NAME", "")
if PLATFORM_NAME:
    EMAIL_SUBJECT_PREFIX = f"[{PLATFORM_NAME}] "
# Password reset links by mail (accounts.services.user_password_reset_request). Default: on
# where mail leaves the process (an EMAIL_BACKEND other than the log's) or with DEBUG on
# (`make run`: the link is read in the log). A link written to production logs would let
# whoever reads them set anyone's password.
# A reset link works once and for an hour (Django's default: 3 days).
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT_SECONDS", 3600)
PASSWORD_RESET_BY_MAIL = env_bool("PASSWORD_RESET_BY_MAIL", EMAIL_BACKEND != "core.mail.LogEmailBackend" or DEBUG)
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Logging ---------------------------------------------------------------------
# One configuration for every process (core.logging.logging_config): web, Celery worker
# and beat (config/celery.py), gunicorn's own lines (config/gunicorn.py), the engine.
LOG_FORMAT = env_str("LOG_FORMAT", "text")  # "json" for JSON lines
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = logging_config(
    log_format=LOG_FORMAT,
    level=LOG_LEVEL,
    loggers={
        "django.db.backends": {"level": "WARNING"},
        "web3": {"level": "WARNING"},
        "eth": {"level": "WARNING"},
        "celery": {"level": "INFO"},
        "axes": {"level": "WARNING"},  # each failed login and lockout, without axes' chatter
        # the engine's start and leadership lines, which process managers and tests wait for
        "orders.sequencer.server": {"level": "INFO"},
    },
)
# Django's mail to ADMINS on a 5xx (its `django` logger's default handler, declared again
# here), but not on a 503: every client retrying while an engine restarts got one, and
# each cost the web worker an error report (core.logging.NotServiceUnavailable).
LOGGING["filters"] |= {
    "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
    "not_service_unavailable": {"()": "core.logging.NotServiceUnavailable"},
}
LOGGING["handlers"]["mail_admins"] = {
    "level": "ERROR",
    "class": "django.utils.log.AdminEmailHandler",
    "filters": ["require_debug_false", "not_service_unavailable"],
}
LOGGING["loggers"]["django"] = {"handlers": ["mail_admins"], "level": "INFO"}

# --- Metrics ---------------------------------------------------------------------
# PROMETHEUS_MULTIPROC_DIR (environment only: prometheus_client reads it at import): every
# process writes its samples there and /metrics sums them (core.metrics). scripts/serve
# sets it to VAR_DIR/prometheus and empties it at start.

# --- Post-trade jobs -----------------------------------------------------------------
POST_TRADE_SWEEP_AGE_SECONDS = env_int("POST_TRADE_SWEEP_AGE_SECONDS", 20)
POST_TRADE_SWEEP_BATCH = env_int("POST_TRADE_SWEEP_BATCH", 500, minimum=1)
# At most one post-trade task per window and publishing process, delayed by the window: it
# takes every job not yet tried, so the batches committed meanwhile ride along (a Celery
# publication costs the engine ~1 ms of CPU; per batch it was a tenth of the engine's work
# under the API load). 0: one task per batch with its jobs.
POST_TRADE_PUBLISH_WINDOW_SECONDS = float(env_decimal("POST_TRADE_PUBLISH_WINDOW_SECONDS", "0.2"))
BROKER_RETRY_AFTER_SECONDS = env_int("BROKER_RETRY_AFTER_SECONDS", 5)

# --- On-chain delivery --------------------------------------------------------------
# The holder share of revenue events, delivered in batches to the HolderReserve contract
# (docs/delivery.md). One sender: the tasks run on the "chain" queue and the service
# takes a database lock. Confirmations: CHAIN_CONFIRMATIONS (Chain block above).
DELIVERY_ENABLED = env_bool("DELIVERY_ENABLED", True)
DELIVERY_BATCH_SIZE = env_int("DELIVERY_BATCH_SIZE", 200, minimum=1)  # events per transaction, at most 256
DELIVERY_MAX_BATCHES_PER_RUN = env_int("DELIVERY_MAX_BATCHES_PER_RUN", 5, minimum=1)
DELIVERY_MAX_ATTEMPTS = env_int("DELIVERY_MAX_ATTEMPTS", 5, minimum=1)  # then the event is critical and alerted
DELIVERY_REDRIVE_BATCH = env_int("DELIVERY_REDRIVE_BATCH", 20, minimum=1)  # events per periodic re-drive
DELIVERY_RETRY_BASE_SECONDS = env_int("DELIVERY_RETRY_BASE_SECONDS", 60)  # next retry: base x 2^attempts
DELIVERY_PENDING_STALE_SECONDS = env_int("DELIVERY_PENDING_STALE_SECONDS", 300)
DELIVERY_STUCK_SECONDS = env_int("DELIVERY_STUCK_SECONDS", 30)  # pending this long: replace with higher fees
DELIVERY_POLL_INTERVAL_SECONDS = env_int("DELIVERY_POLL_INTERVAL_SECONDS", 60, minimum=1)  # the beat re-drive
DELIVERY_DEBOUNCE_SECONDS = env_int("DELIVERY_DEBOUNCE_SECONDS", 2)  # a burst of events publishes one run
DELIVERY_PRICE_MARKET = env_str("DELIVERY_PRICE_MARKET", "ETH-USDT")  # its reference price converts USD to wei
DELIVERY_MAX_FEE_PER_GAS_WEI = env_int("DELIVERY_MAX_FEE_PER_GAS_WEI", 500 * 10**9)  # fee ceiling: above it, pause
DELIVERY_LOG_SCAN_BLOCKS = env_int(
    "DELIVERY_LOG_SCAN_BLOCKS", 2000, minimum=1
)  # blocks per log query (hosted nodes cap it)
# Dust: shares below this many wei are carried forward per stream and paid as one bundle
# once together they reach it (or the oldest waited DELIVERY_DUST_MAX_AGE_SECONDS).
DELIVERY_MIN_ITEM_WEI = env_int("DELIVERY_MIN_ITEM_WEI", 10**13)  # 0.00001 ETH, about a batched item's gas
DELIVERY_DUST_MAX_AGE_SECONDS = env_int("DELIVERY_DUST_MAX_AGE_SECONDS", 7 * 24 * 3600)
# The reference price is used only within this share of the median of recent trades.
DELIVERY_PRICE_MAX_DEVIATION = env_decimal("DELIVERY_PRICE_MAX_DEVIATION", "0.20")
DELIVERY_PRICE_TRADES = env_int("DELIVERY_PRICE_TRADES", 50)
DELIVERY_PRICE_MAX_AGE_SECONDS = env_int("DELIVERY_PRICE_MAX_AGE_SECONDS", 24 * 3600)
DELIVERY_ALERT_REPEAT_SECONDS = env_int("DELIVERY_ALERT_REPEAT_SECONDS", 3600)  # a pause is alerted again this often
DELIVERY_LOW_BALANCE_BATCHES = env_int("DELIVERY_LOW_BALANCE_BATCHES", 20)  # alert below gas for this many batches
DELIVERY_SUBMITTED_ALERT_SECONDS = env_int("DELIVERY_SUBMITTED_ALERT_SECONDS", 600)  # a batch not mined this long
DELIVERY_TASK_SOFT_TIME_LIMIT = env_int("DELIVERY_TASK_SOFT_TIME_LIMIT", 240)
DELIVERY_TASK_TIME_LIMIT = env_int("DELIVERY_TASK_TIME_LIMIT", 300)
CHAIN_RPC_TIMEOUT_SECONDS = env_int("CHAIN_RPC_TIMEOUT_SECONDS", 5, minimum=1)
# Dev chains only (chain id 31337): `manage.py chain_deploy --dev` writes a fresh signer key
# here (var/ is git-ignored). Production uses CHAIN_SIGNER_PRIVATE_KEY from a secret store.
CHAIN_SIGNER_KEY_FILE = Path(env_str("CHAIN_SIGNER_KEY_FILE", str(VAR_DIR / "chain-signer.key")))
CHAIN_DEV_FUNDING_WEI = 10**23  # 100,000 ETH for a dev signer
ALERT_WEBHOOK_URL = env_str("ALERT_WEBHOOK_URL", "")
CELERY_TASK_ROUTES = {
    "revenue.tasks.revenue_delivery_run": {"queue": "chain"},
    "revenue.tasks.revenue_delivery_redrive": {"queue": "chain"},
}

# Every variable these settings read: one set that nothing reads, close to one of these, is
# taken for a typo by `manage.py serve_check` (core.management.commands.serve_check).
ENV_NAMES_READ = sorted(env_names_read())
