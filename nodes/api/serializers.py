"""Serializers of the node catalog and of connections (whose secrets are write-only)."""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth.models import Group
from drf_spectacular.utils import OpenApiExample, extend_schema_serializer
from rest_framework import serializers

from flowplatform.api.serializers import StrictCharField, StrictModelSerializer
from nodes.models import Connection
from nodes.sdk.ports import PortKind
from nodes.urls import ConnectionURLError, validate_url

# RFC 9110 token characters.
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")


class PortSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=[(k.value, k.value) for k in PortKind])
    required = serializers.BooleanField()
    description = serializers.CharField(allow_blank=True)


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "filter",
            value={
                "type": "filter",
                "version": 1,
                "label": "Filter",
                "description": "Keep the records that match all (or any) conditions.",
                "category": "transform",
                "inputs": [{"name": "in", "kind": "records", "required": True, "description": ""}],
                "outputs": [
                    {"name": "out", "kind": "records", "required": True, "description": ""}
                ],
                "dynamic_outputs": False,
                "partitionable": True,
                "config_schema": {
                    "type": "object",
                    "properties": {"conditions": {"type": "array"}, "match": {"type": "string"}},
                },
            },
            response_only=True,
        )
    ]
)
class NodeTypeSerializer(serializers.Serializer):
    """A node type of the catalog, as ``Node.describe()`` states it."""

    type = serializers.CharField(help_text="Catalog key, used as `nodes[].type` in flows.")
    version = serializers.IntegerField()
    label = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    category = serializers.CharField()
    inputs = PortSerializer(many=True)
    outputs = PortSerializer(
        many=True,
        help_text="The output ports; empty when they come from the config (`dynamic_outputs`).",
    )
    dynamic_outputs = serializers.BooleanField(
        help_text="The output ports come from each node's config (`branch`: one per route, plus "
        "`otherwise`): `POST nodes/{type}/ports/` with a config gives them, and every edge from "
        "such a node names its `from_port`."
    )
    partitionable = serializers.BooleanField()
    config_schema = serializers.DictField(help_text="JSON Schema of the node's `config`.")


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "HTTP endpoint",
            value={
                "name": "crm",
                "url": "https://crm.internal",
                "headers": {"Authorization": "Bearer t0ken"},
                "description": "CRM ingest API",
            },
            request_only=True,
        ),
        OpenApiExample(
            "Database",
            value={"name": "warehouse", "url": "postgresql://reader:secret@db.internal/dw"},
            request_only=True,
        ),
        OpenApiExample(
            "HTTP endpoint",
            value={
                "name": "crm",
                "scheme": "https",
                "display_url": "https://crm.internal",
                "header_names": ["Authorization"],
                "description": "CRM ingest API",
                "created_at": "2026-01-05T09:00:00Z",
                "updated_at": "2026-01-05T09:00:00Z",
            },
            response_only=True,
        ),
    ]
)
class ConnectionSerializer(StrictModelSerializer):
    """A named connection. ``url`` and ``headers`` are write-only: no response ever has them."""

    url = StrictCharField(
        write_only=True,
        max_length=2000,
        trim_whitespace=True,
        help_text="postgresql://..., mysql://..., sqlite:///path, an http(s) base URL, "
        "file:///dir or s3://key:secret@bucket/prefix. Stored encrypted. "
        "A URL to another scheme, host or port removes the stored headers: give `headers` in "
        "the same request to keep any.",
    )
    headers = serializers.DictField(
        child=StrictCharField(max_length=4000, allow_blank=True),
        write_only=True,
        required=False,
        help_text="HTTP headers sent with every request (e.g. `Authorization`). Stored "
        "encrypted; replaces the stored headers when given (they are removed when `url` moves "
        "to another scheme, host or port without new ones).",
    )
    header_names = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="Names of the stored headers."
    )
    description = StrictCharField(required=False, allow_blank=True, max_length=10000)
    allowed_groups = serializers.SlugRelatedField(
        slug_field="name",
        queryset=Group.objects.all(),
        many=True,
        required=False,
        help_text="Names of the groups whose members may use the connection in flows "
        "(empty: everyone).",
    )

    class Meta:
        model = Connection
        fields = [
            "name",
            "url",
            "headers",
            "scheme",
            "display_url",
            "header_names",
            "description",
            "allowed_groups",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["scheme", "display_url", "created_at", "updated_at"]
        extra_kwargs = {"name": {"validators": []}}  # a taken name is a 409, checked on save

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        if self.instance is not None:  # the URL names the connection on update
            fields["name"].required = False
        return fields

    def validate_name(self, value: str) -> str:
        if self.instance is not None and value != self.instance.name:
            raise serializers.ValidationError(
                f"must be '{self.instance.name}' (the URL's); connections cannot be renamed"
            )
        return value

    def validate_url(self, value: str) -> str:
        try:
            return validate_url(value)
        except ConnectionURLError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_headers(self, value: dict[str, str]) -> dict[str, str]:
        for name, header in value.items():
            if not HEADER_NAME.match(name):
                raise serializers.ValidationError({name: "not a valid HTTP header name"})
            if "\r" in header or "\n" in header:
                raise serializers.ValidationError({name: "must not contain line breaks"})
        return value

    def create(self, validated_data: dict[str, Any]) -> Connection:
        return _save(Connection(name=validated_data["name"]), validated_data)

    def update(self, instance: Connection, validated_data: dict[str, Any]) -> Connection:
        if not self.partial:
            validated_data.setdefault("headers", {})  # a replacement without headers has none
        return _save(instance, validated_data)


def _save(connection: Connection, data: dict[str, Any]) -> Connection:
    if "url" in data:
        connection.set_url(data["url"])
    if "headers" in data:
        connection.set_headers(data["headers"])
    if "description" in data:
        connection.description = data["description"]
    connection.save()
    if "allowed_groups" in data:
        connection.allowed_groups.set(data["allowed_groups"])
    return connection


class NodePortsRequestSerializer(serializers.Serializer):
    config = serializers.DictField(help_text="A node config of this type.")


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "branch",
            value={
                "inputs": [{"name": "in", "kind": "records", "required": True, "description": ""}],
                "outputs": [
                    {"name": "paid", "kind": "records", "required": True, "description": ""},
                    {"name": "else", "kind": "records", "required": True, "description": ""},
                ],
            },
            response_only=True,
        )
    ]
)
class NodePortsSerializer(serializers.Serializer):
    """The ports of a node of this type with this config."""

    inputs = PortSerializer(many=True)
    outputs = PortSerializer(many=True)
