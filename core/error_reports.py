"""What Django's error reports (mail to ADMINS on a 5xx) may show of the settings: kept out
of core.errors, which the pure engine imports (django.views.debug brings most of Django)."""

from __future__ import annotations

import re

from django.views.debug import SafeExceptionReporterFilter


class SettingsSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's filter hides settings named like API|TOKEN|KEY|SECRET|PASS|SIGNATURE; the
    services' URLs (`postgres://user:password@...`, a node's URL with its API key, a
    webhook's secret path) are hidden too."""

    hidden_settings = re.compile("API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|URL|URI", flags=re.IGNORECASE)
