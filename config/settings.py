"""Settings, read from the environment (see README, "Configuration")."""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG")
# The embedded default runs with no variable set; a public server must set its own SECRET_KEY.
# The prefix makes `manage.py check --deploy` report the built-in key (security.W009).
SECRET_KEY = os.environ.get("SECRET_KEY") or "django-insecure-local-key-set-SECRET_KEY-on-any-public-server"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "csp",
    "django_htmx",
    "template_partials",
    "allauth",
    "allauth.account",
    # Delayed work (email notifications): tasks in the database, run by `manage.py db_worker` (README).
    "django_tasks",
    "django_tasks_db",
    "accounts",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    # After the session, the user and htmx: counts every account form's POST (CHAT_WRITE_LIMITS).
    "config.account_limits.AccountWriteLimitMiddleware",
]

ROOT_URLCONF = "config.urls"
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
                # The unread count in the title of pages without a sidebar (pages with one count from it).
                "chat.context_processors.unread_total",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        # 0: closed when each request ends. Under ASGI a reused connection is held per request thread,
        # and a busy process ran out of PostgreSQL connections; use a pooler (PgBouncer) to reuse them.
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the page read while a socket writes; IMMEDIATE avoids upgrade deadlocks between writers.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
# Off by default: with the pool on, the PostgreSQL pass of the test suite timed out waiting for connections
# (not yet understood); the benchmarks showed no clear gain from it (docs/performance.md).
DATABASE_POOL_SIZE = int(os.environ.get("DATABASE_POOL_SIZE", "0"))
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DATABASE_POOL_SIZE > 0:
    # Connections are reused through a pool instead of opened for every request and every socket's query (a
    # PostgreSQL connection costs milliseconds of CPU on both sides); the pool needs CONN_MAX_AGE 0.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": DATABASE_POOL_SIZE,
        "timeout": 10,
    }
# Channels' one database thread per process (every socket's queries) keeps its PostgreSQL connection this many
# seconds instead of opening one per call (chat.db_thread); 0 opens one per call as requests do.
SOCKET_CONN_MAX_AGE = int(os.environ.get("SOCKET_CONN_MAX_AGE", "300"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
# Events a process's hub channel holds before the layer drops new ones (the layers' default, 100, is per socket).
HUB_CAPACITY = 100_000
REDIS_CHANNEL_LAYER = os.environ.get("REDIS_CHANNEL_LAYER", "core")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": {
                "core": "channels_redis.core.RedisChannelLayer",
                "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
            }[REDIS_CHANNEL_LAYER],
            # One channel per process carries every group event its sockets need (chat/hub/).
            "CONFIG": {
                # A partition (packets dropped, not refused) must fail like an outage, not hang: a connect gives up
                # after 2 s, a read after 10 s (more than the 5 s a hub's blocking read waits for an event), and a
                # publish or a subscription is given up after LAYER_TIMEOUT_SECONDS by its caller (chat.broadcasts).
                "hosts": [{"address": REDIS_URL, "socket_connect_timeout": 2, "socket_timeout": 10}],
                "channel_capacity": {"hub.*": HUB_CAPACITY},
            },
        }
    }
    # Shared by every process; while Redis is down, each process's memory (config/cache.py).
    CACHES = {
        "default": {
            "BACKEND": "config.cache.FailSoftRedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    # One process only: nothing is shared with another server process.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": HUB_CAPACITY},
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "chat:directory"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"

# allauth: username + password, email optional, log in with the username.
ACCOUNT_LOGIN_METHODS = {"username"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "email", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = os.environ.get("ACCOUNT_EMAIL_VERIFICATION", "none")
ACCOUNT_SESSION_REMEMBER = True
# allauth's own rate limits are off: signup, login, password resets and every other account form go through the
# chat's write limits instead (CHAT_WRITE_LIMITS below, config/account_limits.py), one mechanism for every write.
ACCOUNT_RATE_LIMITS = False

# Mail (notifications, password resets, address verification): by SMTP when EMAIL_HOST is set, else printed to the
# console of the process that sends it (the worker for notifications, the web process for account mail).
EMAIL_HOST = os.environ.get("EMAIL_HOST", "").strip()
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "") or "25")
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS")
EMAIL_TIMEOUT = 20
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND") or (
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend"
)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "chat@localhost")
# Absolute links in emails (notifications, unsubscribing) start with this: the address people open the chat at.
CHAT_PUBLIC_URL = os.environ.get("CHAT_PUBLIC_URL", "http://127.0.0.1:8000").strip().rstrip("/")
# A message that notifies someone and is still unread this many seconds later is emailed; at most one email per
# user per this many seconds.
CHAT_EMAIL_DELAY_SECONDS = float(os.environ.get("CHAT_EMAIL_DELAY_SECONDS", "120"))

# Delayed work, kept in the database and run by `manage.py db_worker` (the Procfile's worker; `make run` starts one).
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Attachments (README, "Attachments"): a local folder by default, never served directly (only through the view
# that checks the reader's access); an S3-compatible bucket with django-storages (requirements/s3.txt) when set.
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT") or BASE_DIR / "media")
ATTACHMENT_STORAGE = os.environ.get("ATTACHMENT_STORAGE", "local").strip().lower()
if ATTACHMENT_STORAGE == "local":
    DEFAULT_STORAGE = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
elif ATTACHMENT_STORAGE == "s3":
    # Credentials come from boto3's own sources: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, a role.
    DEFAULT_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": os.environ.get("AWS_STORAGE_BUCKET_NAME", ""),
            "endpoint_url": os.environ.get("AWS_S3_ENDPOINT_URL") or None,
            "region_name": os.environ.get("AWS_S3_REGION_NAME") or None,
            "default_acl": "private",
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }
else:
    raise ImproperlyConfigured(f"ATTACHMENT_STORAGE is {ATTACHMENT_STORAGE!r}: use local (the default) or s3.")
STORAGES = {
    "default": DEFAULT_STORAGE,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# No manifest: pages render and whitenoise serves from the static folders even before collectstatic.
WHITENOISE_USE_FINDERS = True

# Production hardening when served over HTTPS (see README, "Deploying").
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("SECURE_PROXY_SSL_HEADER") else None
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG and env_bool("HTTPS"))
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT")
# Load balancers probe the processes directly over plain HTTP: a redirect would read as "down".
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True

# Content Security Policy (SECURITY.md): scripts only from our own static files, never inline or eval'd (htmx is
# configured for that in base.html); <style> only with the response's nonce. Style attributes stay allowed: the
# directory's unread badges carry their count in one, in fragments rendered once for every socket (no nonce).
# They cannot run script, and img-src/font-src keep them from loading anything from another origin.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, NONCE],
        "style-src-attr": [UNSAFE_INLINE],
        # data: for the empty favicon of every page (base.html).
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "report-uri": "/csp-report",
    },
}

# Chat rules (docs/contract.md, "limits").
CHAT_MESSAGE_MAX_LENGTH = 2000
CHAT_HISTORY_LENGTH = 50
# How long after sending an author may edit or delete a message.
CHAT_EDIT_WINDOW_SECONDS = int(os.environ.get("CHAT_EDIT_WINDOW_SECONDS", "900"))
CHAT_RATE_LIMIT_MESSAGES = int(os.environ.get("CHAT_RATE_LIMIT_MESSAGES", "10"))
CHAT_RATE_LIMIT_SECONDS = float(os.environ.get("CHAT_RATE_LIMIT_SECONDS", "10"))
# Attachments: the largest file accepted, uploads per user per sliding window, the largest image decoded
# (width x height, against decompression bombs), and the thumbnail's longest side.
CHAT_ATTACHMENT_MAX_BYTES = int(os.environ.get("CHAT_ATTACHMENT_MAX_BYTES", str(10 * 1024 * 1024)))
CHAT_ATTACHMENT_RATE_LIMIT = int(os.environ.get("CHAT_ATTACHMENT_RATE_LIMIT", "5"))
CHAT_ATTACHMENT_RATE_SECONDS = float(os.environ.get("CHAT_ATTACHMENT_RATE_SECONDS", "60"))
CHAT_ATTACHMENT_MAX_PIXELS = int(os.environ.get("CHAT_ATTACHMENT_MAX_PIXELS", str(40_000_000)))
CHAT_ATTACHMENT_THUMBNAIL_SIZE = 320
# The largest request body: one attachment and the form around it (caption, CSRF token, multipart headers). daphne
# answers 413 to a body declared (or, chunked, grown) larger before reading it (config/server.py); nginx's upload
# locations allow exactly this much (deploy/nginx.conf).
UPLOAD_FORM_ALLOWANCE_BYTES = 64 * 1024
REQUEST_BODY_MAX_BYTES = CHAT_ATTACHMENT_MAX_BYTES + UPLOAD_FORM_ALLOWANCE_BYTES
# Django's own bounds, per request: every field but the file fits in the allowance, at most one file (the upload
# form's), a file over 2.5 MiB is spooled to a temporary file instead of memory, and no form of the site (the
# admin's bulk actions on 100 rows included) has more than 200 fields.
DATA_UPLOAD_MAX_MEMORY_SIZE = UPLOAD_FORM_ALLOWANCE_BYTES
DATA_UPLOAD_MAX_NUMBER_FILES = 1
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_NUMBER_FIELDS = 200
# Behind nginx: the URL prefix of its internal location for MEDIA_ROOT (deploy/nginx.conf). Set, the file view
# checks access and answers with X-Accel-Redirect, and nginx sends the bytes. Unset: the app streams them.
CHAT_ATTACHMENT_ACCEL_REDIRECT = os.environ.get("CHAT_ATTACHMENT_ACCEL_REDIRECT", "").strip()

# Outgoing webhooks (chat/webhooks.py): the whole exchange's deadline, the most of an answer read, and whether a URL
# may reach private, loopback or link-local addresses (off: only public ones; tests and a closed network turn it on).
CHAT_WEBHOOK_TIMEOUT_SECONDS = 5.0
CHAT_WEBHOOK_MAX_RESPONSE_BYTES = 64 * 1024
CHAT_WEBHOOK_ALLOW_PRIVATE = env_bool("CHAT_WEBHOOK_ALLOW_PRIVATE")

# Writes over HTTP (README and SECURITY.md, "Limits"; chat/flood.py): at most <count> of each kind per sliding
# <seconds>, per user (per client address when anonymous); over it the answer is 429 with Retry-After and a sentence.
# CHAT_WRITE_LIMITS changes some kinds, e.g. "reactions=10/60,signup=5/60,rooms=off". ACCOUNT_RATE_LIMITS=off (the
# load tests' environments set it: thousands of logins from one address) turns every kind off first.
WRITE_LIMIT_DEFAULTS: dict[str, tuple[int, float]] = {
    "reactions": (30, 60),
    "edits": (30, 60),
    "deletes": (30, 60),
    "uploads": (CHAT_ATTACHMENT_RATE_LIMIT, CHAT_ATTACHMENT_RATE_SECONDS),
    "room_settings": (30, 60),
    "room_members": (30, 60),
    "room_leave": (30, 60),
    # Rooms created by opening a new name (GET /chat/<new name>/ or any page under it); opening one that exists is
    # not counted.
    "rooms": (30, 60),
    "signup": (30, 60),
    "login": (30, 60),
    # Per account (the username typed), failed passwords only: then even the right one waits (allauth's default).
    "login_failed": (5, 300),
    "password_reset": (30, 60),
    # Per email address typed into the reset form: its mailbox gets at most this many reset emails.
    "password_reset_email": (5, 60),
    "password_change": (30, 60),
    # Any other account form (email addresses, reauthentication).
    "account": (30, 60),
    # The email notifications preference (/accounts/notifications/ and its unsubscribe links).
    "notifications": (30, 60),
    # Personal API tokens made or revoked at /accounts/tokens/.
    "tokens": (30, 60),
    # Every write over the HTTP API (/api/v1/), per token's user; messages also count against the flood limit.
    "api": (30, 60),
}


def write_limits(defaults: dict[str, tuple[int, float]]) -> dict[str, tuple[int, float] | None]:
    """The defaults, with CHAT_WRITE_LIMITS' changes: `kind=count/seconds`, `kind=count` (per 60 s) or `kind=off`."""
    off = os.environ.get("ACCOUNT_RATE_LIMITS", "").strip().lower() == "off"
    limits: dict[str, tuple[int, float] | None] = {kind: None if off else limit for kind, limit in defaults.items()}
    for item in env_list("CHAT_WRITE_LIMITS"):
        kind, _, value = (part.strip() for part in item.partition("="))
        if kind not in defaults:
            raise ImproperlyConfigured(f"CHAT_WRITE_LIMITS names {kind!r}: the kinds are {', '.join(defaults)}.")
        if value.lower() == "off":
            limits[kind] = None
            continue
        count, _, seconds = value.partition("/")
        try:
            limits[kind] = (int(count), float(seconds or 60))
        except ValueError:
            raise ImproperlyConfigured(f"CHAT_WRITE_LIMITS: {item!r} is not kind=count/seconds or kind=off.") from None
    return limits


CHAT_WRITE_LIMITS = write_limits(WRITE_LIMIT_DEFAULTS)
# A process refreshes its connections every PRESENCE_HEARTBEAT seconds; connections not refreshed
# for PRESENCE_TIMEOUT seconds belong to a process that died and are removed by the next heartbeat
# of a living one: at most TIMEOUT + HEARTBEAT = 60 s after the death (docs/contract.md).
# Bytes a socket may leave unsent (a client that stopped reading) before it is closed with 1013, try again later.
CHAT_SOCKET_BACKLOG_BYTES = int(os.environ.get("CHAT_SOCKET_BACKLOG_BYTES", str(4 * 1024 * 1024)))
# Every so many seconds each process checks its sockets' sessions and access again, and closes those that lost
# them, whether or not the notice arrived (chat.hub.recheck); also at once when the channel layer comes back.
CHAT_SOCKET_RECHECK_SECONDS = float(os.environ.get("CHAT_SOCKET_RECHECK_SECONDS", "30"))
# Bytes of rendered recent logs and online lists a process keeps for its rooms' sockets to share (least recently
# used first out; a room with one socket here keeps none): chat.hub.online.
CHAT_LOG_CACHE_BYTES = int(os.environ.get("CHAT_LOG_CACHE_BYTES", str(64 * 1024 * 1024)))
# Bytes of rendered messages a process keeps, each rendered once and reused by every log that shows it (least
# recently used first out): chat.logs.
CHAT_FRAGMENT_CACHE_BYTES = int(os.environ.get("CHAT_FRAGMENT_CACHE_BYTES", str(64 * 1024 * 1024)))
CHAT_PRESENCE_HEARTBEAT = float(os.environ.get("CHAT_PRESENCE_HEARTBEAT", "15"))
CHAT_PRESENCE_TIMEOUT = float(os.environ.get("CHAT_PRESENCE_TIMEOUT", "45"))

# Logs (README, "Logs"): one line per socket event with user, room, reason and close code, never message
# text at INFO. LOG_LEVEL sets our loggers (chat, config); everything else logs warnings and errors only.
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").strip().upper()
LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain").strip().lower()
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT is {LOG_FORMAT!r}: use plain (the default) or json.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            "class": "config.logging.KeyValueFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {"class": "config.logging.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {"chat": {"level": LOG_LEVEL}, "config": {"level": LOG_LEVEL}},
}
