"""core.api.fast resolves a route's path once per URLconf: the same match as Django's
resolve(), kept for the next request, and never kept across a change of URLconf."""

from __future__ import annotations

from django.test import override_settings
from django.urls import resolve

from core.api.fast import RESOLVED_KEPT, FastPath
from core.asgi import platform_asgi_application
from orders.api.urls import FAST_ROUTES

urlpatterns: list[object] = []  # a URLconf that serves nothing (override_settings below)


def test_a_path_is_resolved_as_django_does_and_kept():
    fast = FastPath(platform_asgi_application(), routes=FAST_ROUTES)
    match = fast._resolve("/api/orders")
    assert match is not None and match.url_name == resolve("/api/orders").url_name == "api-orders"
    assert fast._resolve("/api/orders") is match
    cancel = fast._resolve("/api/orders/12/cancel")
    assert cancel is not None and cancel.url_name == "api-order-cancel" and cancel.kwargs == {"order_id": "12"}
    unknown = fast._resolve("/api/nothing-here")  # the API's JSON 404, a view like any other
    assert unknown is not None and unknown.url_name == resolve("/api/nothing-here").url_name


def test_another_urlconf_is_not_answered_from_the_kept_matches():
    fast = FastPath(platform_asgi_application(), routes=FAST_ROUTES)
    assert fast._resolve("/api/orders") is not None
    with override_settings(ROOT_URLCONF=__name__):
        assert fast._resolve("/api/orders") is None
    assert fast._resolve("/api/orders") is not None


def test_the_kept_paths_are_bounded():
    fast = FastPath(platform_asgi_application(), routes=FAST_ROUTES)
    for order_id in range(RESOLVED_KEPT + 10):
        fast._resolve(f"/api/orders/{order_id}/cancel")
    assert len(fast._resolved) <= RESOLVED_KEPT
