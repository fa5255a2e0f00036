"""JSON stored as written: object keys keep their order (decision 0033).

PostgreSQL's ``jsonb`` reorders an object's keys (shortest first), so a mapping's targets, a
query's params or a request's headers would come back in another order than the user wrote
them — and a mapping's order is the order of the output fields. ``OrderedJSONField`` stores
them in a ``json`` column instead, which keeps the text it is given; SQLite stores JSON as
text anyway.

A ``json`` column has no equality or containment operators: filter on these fields with key
transforms (``config__query``) and ``isnull`` only, never ``=``, ``contains`` or ``has_key``,
and keep them out of ``DISTINCT``.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from psycopg.types.json import Json


class OrderedJSONField(models.JSONField):
    """A JSONField whose objects keep their key order in the database."""

    description = "A JSON value, stored as written (object keys in their order)"

    def db_type(self, connection: BaseDatabaseWrapper) -> str | None:
        if connection.vendor == "postgresql":
            return "json"
        return super().db_type(connection)

    def get_db_prep_value(
        self, value: Any, connection: BaseDatabaseWrapper, prepared: bool = False
    ) -> Any:
        if connection.vendor != "postgresql":
            return super().get_db_prep_value(value, connection, prepared)
        if not prepared:
            value = self.get_prep_value(value)
        # Sent as ``json``: a ``jsonb`` parameter would be reordered before it is stored.
        encoder = self.encoder
        return Json(value, dumps=lambda obj: json.dumps(obj, cls=encoder))

    def from_db_value(self, value: Any, expression: Any, connection: BaseDatabaseWrapper) -> Any:
        if connection.vendor == "postgresql":
            return value  # the driver parses ``json`` itself, keeping the key order
        return super().from_db_value(value, expression, connection)

    def formfield(self, **kwargs: Any) -> Any:
        return super().formfield(**{"form_class": OrderedJSONFormField, **kwargs})


class OrderedJSONFormField(forms.JSONField):
    """A form's JSON field for which a change of key order is a change (Django's compares the
    values with sorted keys, so an inline would not save a reordered mapping)."""

    def has_changed(self, initial: Any, data: Any) -> bool:
        if self.disabled:
            return False
        try:
            value = self.to_python(data)
        except ValidationError:
            return True
        return not same_json(initial, value)


def same_json(a: Any, b: Any) -> bool:
    """Whether two JSON values are equal *and* their objects list their keys in the same order
    (``==`` on dicts ignores the order, which is meaningful in a mapping)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same_json(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(same_json, a, b))
    return bool(a == b) and type(a) is type(b)
