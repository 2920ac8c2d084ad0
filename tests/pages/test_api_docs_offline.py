"""The API docs (/api/docs/: Swagger UI, /api/redoc/: Redoc) are served from the project's
own static files (drf-spectacular-sidecar, WhiteNoise): in a real headless Chromium they
render the operations of the schema while every request to another host is refused and
recorded, and the pages name no other host."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client, override_settings

from tests.environment import require

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip
TIMEOUT_MS = 20_000
OTHER_HOST = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.IGNORECASE)


@pytest.mark.parametrize("page", ["/api/docs/", "/api/redoc/"])
def test_the_docs_pages_name_no_other_host(page):
    response = Client().get(page)
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/" in html
    assert not OTHER_HOST.search(html), html
    # The browser refuses what the bundles themselves would fetch elsewhere (Redoc's logo).
    assert "default-src 'self'" in response["Content-Security-Policy"]


@pytest.mark.parametrize(
    "asset",
    [
        "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js",
        "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css",
        "drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js",
    ],
)
def test_whitenoise_serves_the_docs_assets(asset):
    # WhiteNoise reads its settings when the middleware is built (a new Client builds it).
    with override_settings(WHITENOISE_USE_FINDERS=True, WHITENOISE_AUTOREFRESH=True):
        response = Client().get(f"/static/{asset}")
        assert response.status_code == 200
        assert type(response).__module__.startswith("whitenoise")
        assert len(b"".join(response.streaming_content)) > 1000  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    require(os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run scripts/install-browser")
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield browser
            browser.close()


class OfflinePage:
    """A browser page whose requests to any host but the live server are aborted and recorded."""

    def __init__(self, browser: Any, base_url: str) -> None:
        self.host = urlsplit(base_url).netloc
        self.context = browser.new_context(base_url=base_url, viewport={"width": 1440, "height": 900})
        self.context.set_default_timeout(TIMEOUT_MS)
        self.requested: list[str] = []
        self.refused: list[str] = []
        self.errors: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.blocked: list[str] = []  # refused by the page's Content-Security-Policy
        self.page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            self.blocked.append(message.text)

    def _route(self, route: Any) -> None:
        url = route.request.url
        self.requested.append(url)
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and parts.netloc != self.host:
            self.refused.append(url)
            route.abort()
            return
        route.continue_()

    def close(self) -> None:
        self.context.close()


@pytest.mark.browser
def test_swagger_ui_renders_the_operations_offline(chromium, live_server):
    browser = OfflinePage(chromium, live_server.url)
    try:
        browser.page.goto("/api/docs/")
        operations = browser.page.locator(".opblock")
        operations.first.wait_for()
        assert operations.count() >= 10
        assert browser.page.locator(".opblock-summary-path", has_text="/api/orders").count() >= 1
        # An operation opens and shows its responses, the error envelope among them.
        browser.page.locator(".opblock-summary-path", has_text="/api/markets").first.click()
        browser.page.locator(".responses-wrapper").first.wait_for()
        assert browser.refused == [], browser.refused
        assert any("/static/drf_spectacular_sidecar/swagger-ui-dist/" in url for url in browser.requested)
        assert any(url.endswith("/api/schema/") for url in browser.requested)
        assert browser.errors == []
    finally:
        browser.close()


@pytest.mark.browser
def test_redoc_renders_the_operations_offline(chromium, live_server):
    browser = OfflinePage(chromium, live_server.url)
    try:
        browser.page.goto("/api/redoc/")
        operations = browser.page.locator("[data-section-id*='operation/']")
        operations.first.wait_for()
        assert operations.count() >= 10
        assert browser.page.get_by_text("/api/orders", exact=False).count() >= 1
        assert browser.refused == [], browser.refused
        assert any("/static/drf_spectacular_sidecar/redoc/" in url for url in browser.requested)
        assert browser.errors == []
    finally:
        browser.close()
