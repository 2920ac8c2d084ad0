"""POST/GET /api/keys, DELETE /api/keys/{id}: with a login token or the session only."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.errors import ApiKeyNotFound
from accounts.selectors import api_key_list_for_user
from accounts.services import API_KEY_LABEL_MAX_LENGTH, api_key_create, api_key_delete
from core.api.permissions import IsAuthenticatedInPerson
from core.api.request import request_user
from core.text import parse_id


class ApiKeyInput(serializers.Serializer):
    label = serializers.CharField(max_length=API_KEY_LABEL_MAX_LENGTH)
    permissions = serializers.ListField(
        child=serializers.ChoiceField(choices=["read", "trade"]),
        min_length=1,
        max_length=2,
        help_text='["read"] or ["read", "trade"].',
    )


class ApiKeyOutput(serializers.Serializer):
    id = serializers.IntegerField()
    key = serializers.CharField(help_text="The public identifier, sent as X-API-KEY.")
    label = serializers.CharField()
    permissions = serializers.ListField(child=serializers.ChoiceField(choices=["read", "trade"]))
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True, help_text="Updated at most once a minute.")


class ApiKeyCreatedOutput(serializers.Serializer):
    id = serializers.IntegerField()
    key = serializers.CharField()
    secret = serializers.CharField(help_text="Shown this once and never again: store it now.")
    label = serializers.CharField()
    permissions = serializers.ListField(child=serializers.ChoiceField(choices=["read", "trade"]))
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
        parsed = parse_id(key_id)
        if parsed is None:
            raise ApiKeyNotFound()
        api_key_delete(user_id=request_user(request).pk, api_key_id=parsed)
        return Response(status=status.HTTP_204_NO_CONTENT)
