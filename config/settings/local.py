"""Local development and the embedded demo."""

from config.settings.base import *  # noqa: F403
from config.settings.env import env_bool

DEBUG = env_bool("DJANGO_DEBUG", True)
# The demo has no mail server: a reset link is read in var/log/ (core.mail.LogEmailBackend).
PASSWORD_RESET_BY_MAIL = env_bool("PASSWORD_RESET_BY_MAIL", True)
