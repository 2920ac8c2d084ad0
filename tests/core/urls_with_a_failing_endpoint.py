"""config.urls plus one API endpoint and one page that raise: what an uncaught exception answers."""

from django.http import HttpRequest, HttpResponse
from django.urls import path
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from config.urls import handler400, handler404, handler500
from config.urls import urlpatterns as platform_patterns

__all__ = ["handler400", "handler404", "handler500", "urlpatterns"]


@api_view(["GET"])
@permission_classes([AllowAny])
def api_failing(request: Request) -> Response:
    raise RuntimeError("an endpoint's bug")


def page_failing(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a page's bug")


urlpatterns = [path("api/failing", api_failing), path("failing", page_failing), *platform_patterns]
