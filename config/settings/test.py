"""Test settings: fast hashing, eager-free Celery (tests call services directly)."""

from config.settings.base import *  # noqa: F403
from config.settings.base import REST_FRAMEWORK as _REST_FRAMEWORK

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
PASSWORD_RESET_BY_MAIL = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Per-process memory cache: xdist workers never share throttle counters.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "tests"}}
REST_FRAMEWORK = {
    **_REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {
        "orders": "100000/min",
        "cancels": "100000/min",
        "register": "100000/hour",
        "password_reset": "100000/hour",
        "password_reset_email": "100000/hour",
    },
}
# Tests never reach for a broker unless they say so.
CELERY_BROKER_URL = "memory://localhost/"
CELERY_BROKER_TRANSPORT_OPTIONS = {}
CELERY_TASK_ALWAYS_EAGER = False
# Importing config.asgi (tests of the web's application) leaves the test process's
# connections as they are: closing them per request is the web process's own (a test that
# checks it turns it on).
WEB_CONNECTIONS_PER_REQUEST = False
# The sequencer runs in the test process, in the test's database transaction.
ENGINE_TRANSPORT = "inprocess"
# One process counts the whole order rate (the web processes of production share it).
ORDER_RATE_WORKERS = 1
# Streams: the engine runs here, so its messages go straight to this process's layer.
CHANNEL_LAYERS = {"default": {"BACKEND": "orders.streams.layer.StreamChannelLayer", "CONFIG": {"capacity": 100_000}}}
STREAMS_RELAY = "layer"
