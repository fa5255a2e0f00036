"""Dotted paths into records: ``customer.address.city``, ``items.0.sku``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from nodes.sdk.schema import Problem, RecordSchema


class _Missing:
    """The type of :data:`MISSING`; falsy, and distinct from ``None`` (a present null)."""

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()


def get_path(record: Any, path: str) -> Any:
    """The value at ``path`` (dict keys, list indices), or :data:`MISSING` when absent."""
    current = record
    for part in path.split("."):
        if isinstance(current, Mapping):
            if part not in current:
                return MISSING
            current = current[part]
        elif isinstance(current, Sequence) and not isinstance(current, str | bytes):
            if not part.isdigit() or int(part) >= len(current):
                return MISSING
            current = current[int(part)]
        else:
            return MISSING
    return current


def set_path(record: dict[str, Any], path: str, value: Any) -> None:
    """Set ``path`` in ``record``, creating nested objects on the way.

    Intermediate objects are copied, never changed in place: a record built from another may
    share nested dicts with it, and the source record must stay untouched. A non-object in the
    way is replaced by an object.
    """
    *parents, leaf = path.split(".")
    current = record
    for part in parents:
        child = current.get(part)
        child = dict(child) if isinstance(child, Mapping) else {}
        current[part] = child
        current = child
    current[leaf] = value


def upstream_problem(location: str, path: str, schema: RecordSchema) -> Problem | None:
    """A problem at ``location`` when ``path`` cannot exist in the (known) upstream ``schema``."""
    if schema.has_path(path):
        return None
    known = ", ".join(schema.fields or {}) or "none"
    return Problem(location, f"field '{path}' does not exist upstream (known fields: {known})")
