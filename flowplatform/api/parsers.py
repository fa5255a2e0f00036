"""JSON request bodies, parsed by the platform's JSON document rules (flowplatform/jsondoc.py)."""

from __future__ import annotations

from typing import IO, Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.renderers import JSONRenderer

from flowplatform.api.errors import PayloadTooLarge, ProblemError, error_item
from flowplatform.jsondoc import JSONDocumentError, load_json_document, read_document


class JSONParser(BaseParser):
    """Parse a JSON body of at most ``DATA_UPLOAD_MAX_MEMORY_SIZE`` bytes: problems with
    values are answered 400 with their paths, a malformed body 400, an oversized one 413."""

    media_type = "application/json"
    renderer_class = JSONRenderer

    def parse(
        self, stream: IO[bytes], media_type: str | None = None, parser_context: Any = None
    ) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return load_json_document(read_document(stream), encoding)
        except JSONDocumentError as exc:
            first = exc.problems[0]
            if exc.too_large:
                raise PayloadTooLarge(
                    f"the request body is {first.message}", "Request body too large."
                ) from None
            if first.path or len(exc.problems) > 1:
                raise ProblemError([error_item(p.path, p.message) for p in exc.problems]) from None
            raise ParseError(first.message) from None
