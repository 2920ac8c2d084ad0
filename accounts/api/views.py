from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.serializers import (
    CredentialsInput,
    MeSerializer,
    RefreshInput,
    RegisteredSerializer,
    RegisterInput,
    TokenPairSerializer,
)
from accounts.services import REGISTER_RATE_SCOPE, client_address, user_authenticate, user_register
from accounts.tokens import token_logout, token_pair_issue, token_pair_rotate
from core.api.schema import error_responses
from core.api.throttling import RateLimitHeaders, ResilientScopedRateThrottle


class ClientAddressThrottle(ResilientScopedRateThrottle):
    """Counts per REMOTE_ADDR (the client behind a trusted proxy: core.middleware), like
    the login throttle. DRF's own identity would take a client-sent X-Forwarded-For as
    is (NUM_PROXIES unset): a new value per request would escape the limit."""

    def get_ident(self, request: Request) -> str:
        return client_address(request=request._request)


class RegisterApi(RateLimitHeaders, APIView):
    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []
    throttle_classes = [ClientAddressThrottle]
    throttle_scope = REGISTER_RATE_SCOPE

    @extend_schema(
        request=RegisterInput,
        responses={201: RegisteredSerializer},
    )
    def post(self, request: Request) -> Response:
        data = RegisterInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = user_register(**data.validated_data)
        return Response(RegisteredSerializer(user).data, status=status.HTTP_201_CREATED)


class TokenObtainApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(
        request=CredentialsInput,
        responses={
            200: TokenPairSerializer,
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
        return Response(TokenPairSerializer(token_pair_issue(user=user)).data)


class TokenRefreshApi(APIView):
    """Refresh tokens rotate: the old one is spent and a new pair is returned; presenting a
    spent one revokes every token of its login (accounts.tokens)."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(
        request=RefreshInput,
        responses={
            200: TokenPairSerializer,
            **error_responses(401, s401="`invalid_token`: expired, malformed or revoked."),
        },
        description="Spends the refresh token and answers the next pair. A refresh token presented"
        " again after it was spent revokes every refresh token of its login.",
    )
    def post(self, request: Request) -> Response:
        data = RefreshInput(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(TokenPairSerializer(token_pair_rotate(refresh=data.validated_data["refresh"])).data)


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

    @extend_schema(responses={200: MeSerializer})
    def get(self, request: Request) -> Response:
        return Response(MeSerializer(request.user).data)
