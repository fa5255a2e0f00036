"""Serializers shared by every app's API: the error shape and strict input."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import models
from rest_framework import serializers


class ErrorItemSerializer(serializers.Serializer):
    path = serializers.CharField(
        help_text="Where the problem is: a field path such as `nodes[1].config.conditions[0].op`, "
        "a query parameter, or an empty string for the request as a whole."
    )
    message = serializers.CharField()
    node = serializers.CharField(
        allow_null=True, help_text="Key of the flow node at fault, when there is one."
    )


class ErrorSerializer(serializers.Serializer):
    """Every error answer of the API."""

    detail = serializers.CharField(help_text="What went wrong, in one sentence.")
    errors = ErrorItemSerializer(many=True, help_text="Each problem and where it is.")


class StrictCharField(serializers.CharField):
    """A CharField that takes only strings (DRF's would turn ``5`` into ``"5"``)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictSlugField(StrictCharField, serializers.SlugField):
    """A SlugField that takes only strings."""


class StrictSerializer(serializers.Serializer):
    """Rejects fields it does not know (read-only fields sent back are tolerated)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(str(key) for key in data if key not in self.fields)
            if unknown:
                raise serializers.ValidationError({key: ["unknown field"] for key in unknown})
        return super().to_internal_value(data)


class StrictModelSerializer(StrictSerializer, serializers.ModelSerializer):
    """A ModelSerializer that rejects unknown fields and takes text fields only as strings."""

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: StrictCharField,
        models.TextField: StrictCharField,
        models.SlugField: StrictSlugField,
    }
