"""The accounts API's requests and answers, declared (the schema components are named
after them)."""

from __future__ import annotations

from rest_framework import serializers

from core.api.inputs import KnownFieldsInput


class RegisterInput(KnownFieldsInput):
    username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150, min_length=3)
    password = serializers.CharField(max_length=128, trim_whitespace=False)
    email = serializers.EmailField(required=False, allow_blank=True, default="")


class CredentialsInput(KnownFieldsInput):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, trim_whitespace=False)


class RefreshInput(KnownFieldsInput):
    # A JWT is base64url segments joined by dots; the schema says so, and so does the check.
    refresh = serializers.RegexField(r"^[A-Za-z0-9_=.-]+$", max_length=2048)


class TokenPairSerializer(serializers.Serializer):
    # Reads the pair accounts.tokens issues.

    access = serializers.CharField()
    refresh = serializers.CharField()


class RegisteredSerializer(serializers.Serializer):
    # Reads the user just registered.

    id = serializers.IntegerField(source="pk")
    username = serializers.CharField(source="get_username")


class MeSerializer(serializers.Serializer):
    # Reads the caller.

    id = serializers.IntegerField(source="pk")
    username = serializers.CharField(source="get_username")
    is_staff = serializers.BooleanField()
