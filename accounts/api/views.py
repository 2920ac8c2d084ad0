from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.serializers import TokenRefreshSerializer
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.login_throttle import client_ip_of
from accounts.services import token_pair_issue, user_authenticate, user_register
from core.api.schema import error_responses
from core.api.throttling import ResilientScopedRateThrottle
from core.errors import ApplicationError


class InvalidToken(ApplicationError):
    code = "invalid_token"
    status = 401
    default_message = "The token is invalid, expired or revoked."


class RegisterInput(serializers.Serializer):
    username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150, min_length=3)
    password = serializers.CharField(max_length=128, trim_whitespace=False)
    email = serializers.EmailField(required=False, allow_blank=True, default="")


class CredentialsInput(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False)


class RefreshInput(serializers.Serializer):
    refresh = serializers.CharField(max_length=2048)


TokenPair = inline_serializer("TokenPair", {"access": serializers.CharField(), "refresh": serializers.CharField()})


class ClientAddressThrottle(ResilientScopedRateThrottle):
    """Counts per REMOTE_ADDR, like the login throttle. DRF's own identity takes a
    client-sent X-Forwarded-For as is (NUM_PROXIES unset): a new value per request
    would escape the limit."""

    def get_ident(self, request: Request) -> str:
        return client_ip_of(request.META)


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
                s429="`throttled`: too many failed logins for this username from this address.",
            ),
        },
    )
    def post(self, request: Request) -> Response:
        data = CredentialsInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = user_authenticate(**data.validated_data, client_ip=client_ip_of(request.META))
        return Response(token_pair_issue(user=user))


class TokenRefreshApi(APIView):
    """Refresh tokens rotate: the old one is blacklisted and a new pair is returned."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(
        request=RefreshInput,
        responses={200: TokenPair, **error_responses(401, s401="`invalid_token`: expired, malformed or revoked.")},
    )
    def post(self, request: Request) -> Response:
        data = RefreshInput(data=request.data)
        data.is_valid(raise_exception=True)
        serializer = TokenRefreshSerializer(data=data.validated_data)
        try:
            serializer.is_valid(raise_exception=True)
        except (TokenError, AuthenticationFailed, serializers.ValidationError, ObjectDoesNotExist) as exc:
            # Expired, malformed, blacklisted (already rotated) or belonging to a removed user
            # (simplejwt's serializer looks the user up with .get(): DoesNotExist, not a 500).
            raise InvalidToken() from exc
        return Response(serializer.validated_data)


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
        try:
            RefreshToken(data.validated_data["refresh"]).blacklist()
        except TokenError as exc:
            raise InvalidToken() from exc
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
