from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.services import user_authenticate, user_register
from accounts.tokens import token_logout, token_pair_issue, token_pair_rotate
from core.api.schema import error_responses
from core.api.throttling import ResilientScopedRateThrottle


class RegisterInput(serializers.Serializer):
    username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150, min_length=3)
    password = serializers.CharField(max_length=128, trim_whitespace=False)
    email = serializers.EmailField(required=False, allow_blank=True, default="")


class CredentialsInput(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False)


class RefreshInput(serializers.Serializer):
    # A JWT is base64url segments joined by dots; the schema says so, and so does the check.
    refresh = serializers.RegexField(r"^[A-Za-z0-9_=.-]+$", max_length=2048)


TokenPair = inline_serializer("TokenPair", {"access": serializers.CharField(), "refresh": serializers.CharField()})


class ClientAddressThrottle(ResilientScopedRateThrottle):
    """Counts per REMOTE_ADDR (the client behind a trusted proxy: core.middleware), like
    the login throttle. DRF's own identity would take a client-sent X-Forwarded-For as
    is (NUM_PROXIES unset): a new value per request would escape the limit."""

    def get_ident(self, request: Request) -> str:
        return str(request.META.get("REMOTE_ADDR") or "unknown")


class RegisterApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []
    throttle_classes = [ClientAddressThrottle]
    throttle_scope = "register"

    @extend_schema(
        request=RegisterInput,
        responses={
            201: inline_serializer(
                "Registered", {"id": serializers.IntegerField(), "username": serializers.CharField()}
            )
        },
    )
    def post(self, request: Request) -> Response:
        data = RegisterInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = user_register(**data.validated_data)
        return Response({"id": user.pk, "username": user.get_username()}, status=status.HTTP_201_CREATED)


class TokenObtainApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(
        request=CredentialsInput,
        responses={
            200: TokenPair,
            **error_responses(
                401,
                429,
                s401="`invalid_credentials`: unknown user or wrong password.",
                s429="`throttled`: too many failed logins for this username from this address, or from"
                " this address across usernames; `Retry-After` says when to try again.",
            ),
        },
    )
    def post(self, request: Request) -> Response:
        data = CredentialsInput(data=request.data)
        data.is_valid(raise_exception=True)
        # The HttpRequest: the failed-login policy (django-axes) marks it, and its middleware reads it.
        user = user_authenticate(request=request._request, **data.validated_data)
        return Response(token_pair_issue(user=user))


class TokenRefreshApi(APIView):
    """Refresh tokens rotate: the old one is spent and a new pair is returned; presenting a
    spent one revokes every token of its login (accounts.tokens)."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(
        request=RefreshInput,
        responses={200: TokenPair, **error_responses(401, s401="`invalid_token`: expired, malformed or revoked.")},
    )
    def post(self, request: Request) -> Response:
        data = RefreshInput(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(token_pair_rotate(refresh=data.validated_data["refresh"]))


class LogoutApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(
        request=RefreshInput,
        responses={205: None, **error_responses(401, s401="`invalid_token`: expired, malformed or revoked.")},
    )
    def post(self, request: Request) -> Response:
        data = RefreshInput(data=request.data)
        data.is_valid(raise_exception=True)
        token_logout(refresh=data.validated_data["refresh"])
        return Response(status=status.HTTP_205_RESET_CONTENT)


class MeApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={
            200: inline_serializer(
                "Me",
                {
                    "id": serializers.IntegerField(),
                    "username": serializers.CharField(),
                    "is_staff": serializers.BooleanField(),
                },
            )
        }
    )
    def get(self, request: Request) -> Response:
        user = request.user
        return Response({"id": user.pk, "username": user.get_username(), "is_staff": bool(user.is_staff)})
