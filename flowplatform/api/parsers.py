"""JSON request bodies: size-limited, strict, and checked for values the database cannot store."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import IO, Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.renderers import JSONRenderer

from flowplatform.api.errors import ErrorItem, PayloadTooLarge, ProblemError, error_item

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
MAX_DEPTH = 64
MAX_REPORTED = 20


class JSONParser(BaseParser):
    """Parse a JSON body of at most ``DATA_UPLOAD_MAX_MEMORY_SIZE`` bytes.

    Rejected with the path of the offending value: NUL characters (PostgreSQL cannot store
    them), integers outside 64 bits, non-finite numbers, nesting deeper than 64 levels.
    """

    media_type = "application/json"
    renderer_class = JSONRenderer

    def parse(
        self, stream: IO[bytes], media_type: str | None = None, parser_context: Any = None
    ) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise PayloadTooLarge(
                f"the request body is larger than the limit of {limit} bytes",
                "Request body too large.",
            )
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            raise ParseError(f"the request body is not valid {encoding} text") from None
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            raise ParseError(
                f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None
        except RecursionError:
            raise ParseError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
        except ValueError as exc:  # e.g. an integer with more digits than Python converts
            raise ParseError(f"malformed JSON: {exc}") from None
        problems = unstorable_values(data)
        if problems:
            raise ProblemError(problems)
        return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"'{name}' is not valid JSON")


def unstorable_values(data: Any) -> list[ErrorItem]:
    """Located problems with values no field of the platform accepts (empty when none)."""
    problems: list[ErrorItem] = []
    stack: list[tuple[str, Any, int]] = [("", data, 0)]
    while stack and len(problems) < MAX_REPORTED:
        path, value, depth = stack.pop()
        message = _problem(value, depth)
        if message:
            problems.append(error_item(path, message))
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                child = f"{path}.{key}" if path else str(key)
                if "\x00" in key:
                    problems.append(error_item(child, "keys must not contain NUL characters"))
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
    """Why no column can store the scalar ``value`` (empty when it can)."""
    if isinstance(value, str) and "\x00" in value:
        return "must not contain NUL characters"
    if isinstance(value, int) and not isinstance(value, bool) and not INT_MIN <= value <= INT_MAX:
        return "integer out of range (must fit in 64 bits)"
    if isinstance(value, float) and not math.isfinite(value):
        return "number out of range"
    if isinstance(value, Decimal) and not value.is_finite():
        return "number out of range"
    return ""
