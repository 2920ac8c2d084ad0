"""POST/GET /api/keys, DELETE /api/keys/{id}: with a login token or the session only."""

from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.errors import ApiKeyNotFound
from accounts.models import PERMISSIONS
from accounts.selectors import api_key_list_for_user
from accounts.services import (
    API_KEY_LABEL_MAX_LENGTH,
    API_KEY_LABEL_PATTERN,
    API_KEY_PERMISSION_LISTS,
    api_key_create,
    api_key_delete,
)
from core.api.fields import StrictCharField
from core.api.inputs import KnownFieldsInput
from core.api.permissions import IsAuthenticatedInPerson
from core.api.request import request_user
from core.text import path_id

PERMISSIONS_SCHEMA = {
    "type": "array",
    "items": {"type": "string", "enum": list(PERMISSIONS)},
    "enum": [list(p) for p in API_KEY_PERMISSION_LISTS],
    "description": '["read"] or ["read", "trade"], exactly.',
}


@extend_schema_field(PERMISSIONS_SCHEMA)
class PermissionsField(serializers.Field):
    default_error_messages = {"invalid": 'Must be ["read"] or ["read", "trade"].'}

    def to_internal_value(self, data: Any) -> list[str]:
        if data not in API_KEY_PERMISSION_LISTS:
            self.fail("invalid")
        return list(data)

    def to_representation(self, value: Any) -> Any:
        return value


class ApiKeyInput(KnownFieldsInput):
    label = StrictCharField(  # type: ignore[assignment]  # a field named like Field.label
        max_length=API_KEY_LABEL_MAX_LENGTH,
        trim_whitespace=False,
        validators=[RegexValidator(API_KEY_LABEL_PATTERN)],
    )
    permissions = PermissionsField()


class ApiKeyOutput(serializers.Serializer):
    id = serializers.IntegerField()
    key = serializers.CharField(help_text="The public identifier, sent as X-API-KEY.")
    label = serializers.CharField()  # type: ignore[assignment]
    permissions = serializers.ListField(child=serializers.ChoiceField(choices=PERMISSIONS))
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True, help_text="Updated at most once a minute.")


class ApiKeyCreatedOutput(serializers.Serializer):
    id = serializers.IntegerField()
    key = serializers.CharField()
    secret = serializers.CharField(help_text="Shown this once and never again: store it now.")
    label = serializers.CharField()  # type: ignore[assignment]
    permissions = serializers.ListField(child=serializers.ChoiceField(choices=PERMISSIONS))
    created_at = serializers.DateTimeField()


class ApiKeysApi(APIView):
    permission_classes = [IsAuthenticatedInPerson]

    @extend_schema(responses={200: ApiKeyOutput(many=True)}, operation_id="keys_list")
    def get(self, request: Request) -> Response:
        keys = api_key_list_for_user(user_id=request_user(request).pk)
        return Response(ApiKeyOutput(keys, many=True).data)

    @extend_schema(request=ApiKeyInput, responses={201: ApiKeyCreatedOutput}, operation_id="keys_create")
    def post(self, request: Request) -> Response:
        data = ApiKeyInput(data=request.data)
        data.is_valid(raise_exception=True)
        api_key, secret = api_key_create(user=request_user(request), **data.validated_data)
        body = {
            "id": api_key.pk,
            "key": api_key.key,
            "secret": secret,
            "label": api_key.label,
            "permissions": api_key.permissions,
            "created_at": api_key.created_at,
        }
        return Response(ApiKeyCreatedOutput(body).data, status=status.HTTP_201_CREATED)


class ApiKeyDetailApi(APIView):
    permission_classes = [IsAuthenticatedInPerson]

    @extend_schema(
        parameters=[OpenApiParameter("key_id", int, OpenApiParameter.PATH)],
        request=None,
        responses={204: None},
        operation_id="keys_delete",
    )
    def delete(self, request: Request, key_id: str) -> Response:
        api_key_delete(user_id=request_user(request).pk, api_key_id=path_id(key_id, not_found=ApiKeyNotFound))
        return Response(status=status.HTTP_204_NO_CONTENT)
