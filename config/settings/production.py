"""Production: DEBUG off, secrets required from the environment, HTTPS everywhere."""

from config.settings.base import *  # noqa: F403
from config.settings.env import env_bool, env_int, env_list, env_names_read, env_str

DEBUG = False
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if len(SECRET_KEY) < 50 or SECRET_KEY.startswith("insecure"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be a random string of at least 50 characters.")
SIMPLE_JWT["SIGNING_KEY"] = SECRET_KEY  # noqa: F405
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS")
# Mail to ADMINS and alerts name the platform they come from (base.py, PLATFORM_NAME).
PLATFORM_NAME = env_str("PLATFORM_NAME", ALLOWED_HOSTS[0] if ALLOWED_HOSTS else "")
EMAIL_SUBJECT_PREFIX = f"[{PLATFORM_NAME}] " if PLATFORM_NAME else "[Django] "
DATABASE_URL = env_str("DATABASE_URL")
DATABASES = {"default": database_config(DATABASE_URL)}  # noqa: F405
CHAIN_SIGNER_PRIVATE_KEY = env_str("CHAIN_SIGNER_PRIVATE_KEY", "")

SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
# Believed only from TRUSTED_PROXIES: core.middleware.TrustedProxyMiddleware drops the
# header from anyone else.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# No address is trusted with the metrics by default: a proxy on the same host would make
# every client look local. The scraper sends METRICS_TOKEN, or set the allow-list.
METRICS_ALLOWED_NETWORKS = env_list("METRICS_ALLOWED_NETWORKS")
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# Every variable these settings read: one set that nothing reads, close to one of these, is
# taken for a typo by `manage.py serve_check` (core.management.commands.serve_check).
ENV_NAMES_READ = sorted(env_names_read())
