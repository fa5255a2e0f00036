"""The rules for JSON documents — API request bodies and flow files alike: size-limited,
strict, and checked for values the database cannot store.

They live here once, free of the API framework: the API's parser
(``flowplatform/api/parsers.py``), the admin's flow import and ``importflow`` all apply them.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import IO, Any, NamedTuple

from django.conf import settings

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
MAX_DEPTH = 64
MAX_REPORTED = 20


class Problem(NamedTuple):
    """Why a document is refused: ``path`` of the offending value (``""``: the whole)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class JSONDocumentError(ValueError):
    """A JSON document the platform refuses, with every located reason (at most 20);
    ``too_large`` when it exceeds the size limit."""

    def __init__(self, problems: list[Problem], *, too_large: bool = False) -> None:
        self.problems = problems
        self.too_large = too_large
        super().__init__("; ".join(map(str, problems)))


def document_size_limit() -> int:
    """Largest JSON document accepted, in bytes (``FLOWPLATFORM_MAX_REQUEST_BYTES``)."""
    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)


def read_document(stream: IO[bytes], limit: int | None = None) -> bytes:
    """Read at most ``limit`` bytes (default: the document limit); a longer stream is refused
    after reading one byte past the limit, never whole."""
    limit = document_size_limit() if limit is None else limit
    raw = stream.read(limit + 1)
    if len(raw) > limit:
        raise JSONDocumentError(
            [Problem("", f"larger than the limit of {limit} bytes")], too_large=True
        )
    return raw


def load_json_document(raw: bytes, encoding: str = "utf-8") -> Any:
    """Parse ``raw`` by the platform's rules, or raise JSONDocumentError saying why.

    Refused: text that is not ``encoding``, malformed JSON, ``NaN``/``Infinity``, NUL
    characters (PostgreSQL cannot store them), integers outside 64 bits, non-finite numbers,
    nesting deeper than 64 levels — each with the path of the offending value.
    """
    try:
        text = raw.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        raise JSONDocumentError([Problem("", f"not valid {encoding} text")]) from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        message = f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        raise JSONDocumentError([Problem("", message)]) from None
    except RecursionError:
        message = f"JSON nested deeper than {MAX_DEPTH} levels"
        raise JSONDocumentError([Problem("", message)]) from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise JSONDocumentError([Problem("", f"invalid JSON: {exc}")]) from None
    problems = unstorable_values(data)
    if problems:
        raise JSONDocumentError(problems)
    return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"'{name}' is not valid JSON")


def unstorable_values(data: Any) -> list[Problem]:
    """Located problems with values no field of the platform accepts (empty when none)."""
    problems: list[Problem] = []
    stack: list[tuple[str, Any, int]] = [("", data, 0)]
    while stack and len(problems) < MAX_REPORTED:
        path, value, depth = stack.pop()
        message = _problem(value, depth)
        if message:
            problems.append(Problem(path, message))
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                child = f"{path}.{key}" if path else str(key)
                if "\x00" in key:
                    problems.append(Problem(child, "keys must not contain NUL characters"))
                else:
                    stack.append((child, item, depth + 1))
        elif isinstance(value, list):
            stack.extend(
                (f"{path}[{index}]", item, depth + 1)
                for index, item in reversed(list(enumerate(value)))
            )
    return problems


def _problem(value: Any, depth: int) -> str:
    if depth > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH} levels"
    return unstorable_value(value)


def unstorable_value(value: Any) -> str:
    """Why no column can store the scalar ``value`` (empty when it can); the API's filters
    apply it to query parameters too."""
    if isinstance(value, str) and "\x00" in value:
        return "must not contain NUL characters"
    if isinstance(value, int) and not isinstance(value, bool) and not INT_MIN <= value <= INT_MAX:
        return "integer out of range (must fit in 64 bits)"
    if isinstance(value, float) and not math.isfinite(value):
        return "number out of range"
    if isinstance(value, Decimal) and not value.is_finite():
        return "number out of range"
    return ""
