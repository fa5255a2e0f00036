"""Record schemas: what fields a stream carries, known before anything runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class FieldType(StrEnum):
    """The type of one field of a record."""

    STRING = "string"
    INTEGER = "integer"
    FLOAT = "float"
    DECIMAL = "decimal"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"
    JSON = "json"  # nested objects or arrays: paths below it are not checked
    ANY = "any"


@dataclass(frozen=True)
class RecordSchema:
    """The fields of the records on a stream, or ``unknown`` when they cannot be known statically.

    ``fields=None`` means unknown: checks that need the upstream fields are skipped.
    """

    fields: dict[str, FieldType] | None = None

    @classmethod
    def unknown(cls) -> RecordSchema:
        return cls(None)

    @property
    def known(self) -> bool:
        return self.fields is not None

    def has_path(self, path: str) -> bool:
        """Whether a dotted path can resolve; unknown schemas and JSON fields accept anything below."""
        if self.fields is None:
            return True
        head = path.split(".", 1)[0]
        if head not in self.fields:
            return False
        return "." not in path or self.fields[head] in (FieldType.JSON, FieldType.ANY)

    def type_of(self, path: str) -> FieldType:
        """The type at ``path``; ``ANY`` when unknown or nested."""
        if self.fields is None or "." in path:
            return FieldType.ANY
        return self.fields.get(path, FieldType.ANY)

    def as_dict(self) -> dict[str, str] | None:
        if self.fields is None:
            return None
        return {name: str(kind) for name, kind in self.fields.items()}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a node or flow, located by a dotted ``path`` such as ``config.mapping.total``."""

    path: str
    message: str
    extra: dict[str, object] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message
