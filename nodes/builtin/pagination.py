"""Pagination of JSON APIs for ``http_request``: which page comes next, and when to stop.

Each type is a config model with one method, :meth:`next_page`: given the page just read (its
request, body, headers and record count), the request of the next page, or ``None`` when
there is none. Every type stops on an empty page; ``offset`` and ``page`` also stop on a short
one; ``next_url`` and ``cursor`` when the link or cursor is missing. A page position is plain
JSON (:class:`PageRequest`), so that it can be checkpointed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urljoin

from pydantic import Field, model_validator
from pydantic_core import ErrorDetails
from requests.utils import parse_header_links

from nodes.builtin.paths import MISSING, get_path
from nodes.sdk.errors import NodeError
from nodes.sdk.node import NodeConfig

PARAM = r"^[^\s&=#]+$"
DEFAULT_MAX_PAGES = 10_000


@dataclass(frozen=True)
class PageRequest:
    """Where a page is: its URL and the query parameters added to it."""

    url: str
    params: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """As JSON for a checkpoint (the parameters as pairs: a JSON column may reorder keys)."""
        return {"url": self.url, "params": list(self.params.items())}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> PageRequest:
        return cls(value["url"], dict(value["params"]))


class NoPagination(NodeConfig):
    """One request, one page."""

    type: Literal["none"] = "none"

    def first(self, url: str, params: dict[str, str]) -> PageRequest:
        return PageRequest(url, params)

    def next_page(
        self, page: PageRequest, body: Any, headers: Mapping[str, str], records: int
    ) -> PageRequest | None:
        return None


class _Paged(NodeConfig):
    max_pages: int = Field(
        DEFAULT_MAX_PAGES,
        ge=1,
        le=10_000_000,
        description="Most pages read; reaching it with more to read fails unless on_max_pages "
        "is 'stop'.",
    )
    on_max_pages: Literal["fail", "stop"] = Field(
        "fail",
        description="'fail': an API with more pages fails the node; 'stop': keep those read.",
    )

    def first(self, url: str, params: dict[str, str]) -> PageRequest:
        return PageRequest(url, params)


class NextUrlPagination(_Paged):
    """The next page's URL is in the body (``path``) or in an RFC 8288 ``Link`` header."""

    type: Literal["next_url"]
    path: str | None = Field(
        None, min_length=1, description="Dotted path of the next URL in the body."
    )
    link_header: bool = Field(False, description='Read the URL of Link: <...>; rel="next".')

    @model_validator(mode="after")
    def _one_source(self) -> NextUrlPagination:
        if not self.path and not self.link_header:
            raise ValueError("next_url pagination needs a path or link_header: true")
        return self

    def next_page(
        self, page: PageRequest, body: Any, headers: Mapping[str, str], records: int
    ) -> PageRequest | None:
        link = _next_link(headers) if self.link_header else None
        if link is None and self.path:
            value = get_path(body, self.path)
            link = value if isinstance(value, str) and value else None
        if not records or link is None:
            return None
        return PageRequest(urljoin(page.url, link))  # the link carries its own query


class CursorPagination(_Paged):
    """The body names a cursor; the next request sends it as ``param``."""

    type: Literal["cursor"]
    path: str = Field(min_length=1, description="Dotted path of the next cursor in the body.")
    param: str = Field("cursor", pattern=PARAM, description="Query parameter of the cursor.")

    def next_page(
        self, page: PageRequest, body: Any, headers: Mapping[str, str], records: int
    ) -> PageRequest | None:
        cursor = get_path(body, self.path)
        if not records or cursor is MISSING or cursor is None or cursor == "":
            return None
        if isinstance(cursor, dict | list):
            message = f"pagination.path '{self.path}': the cursor is not a single value"
            raise NodeError(message, permanent=True)
        return PageRequest(page.url, {**page.params, self.param: query_text(cursor)})


class OffsetPagination(_Paged):
    """``param`` counts records skipped (from 0), ``limit_param`` asks for ``limit`` a page."""

    type: Literal["offset"]
    param: str = Field("offset", pattern=PARAM, description="Query parameter of the offset.")
    limit_param: str = Field(
        "limit", pattern=PARAM, description="Query parameter of the page size."
    )
    limit: int = Field(100, ge=1, le=1_000_000, description="Records asked for per page.")

    def first(self, url: str, params: dict[str, str]) -> PageRequest:
        return PageRequest(url, {**params, self.param: "0", self.limit_param: str(self.limit)})

    def next_page(
        self, page: PageRequest, body: Any, headers: Mapping[str, str], records: int
    ) -> PageRequest | None:
        if records < self.limit:
            return None
        offset = int(page.params[self.param]) + self.limit
        return PageRequest(page.url, {**page.params, self.param: str(offset)})


class PagePagination(_Paged):
    """``param`` numbers the pages from ``start``; ``size_param`` asks for ``size`` a page."""

    type: Literal["page"]
    param: str = Field("page", pattern=PARAM, description="Query parameter of the page number.")
    start: int = Field(1, ge=0, description="Number of the first page.")
    size_param: str | None = Field(
        "per_page", pattern=PARAM, description="Query parameter of the page size (null: not sent)."
    )
    size: int = Field(100, ge=1, le=1_000_000, description="Records per page.")

    def first(self, url: str, params: dict[str, str]) -> PageRequest:
        sized = {self.size_param: str(self.size)} if self.size_param else {}
        return PageRequest(url, {**params, self.param: str(self.start), **sized})

    def next_page(
        self, page: PageRequest, body: Any, headers: Mapping[str, str], records: int
    ) -> PageRequest | None:
        if records < self.size:
            return None
        number = int(page.params[self.param]) + 1
        return PageRequest(page.url, {**page.params, self.param: str(number)})


AnyPagination = (
    NoPagination | NextUrlPagination | CursorPagination | OffsetPagination | PagePagination
)
Pagination = Annotated[AnyPagination, Field(discriminator="type")]
TYPES = ("none", "next_url", "cursor", "offset", "page")


def _next_link(headers: Mapping[str, str]) -> str | None:
    """The target of the ``Link`` header's ``rel="next"`` (RFC 8288), if any."""
    value = headers.get("Link", "")
    for link in parse_header_links(value) if value else ():
        if "next" in link.get("rel", "").lower().split() and link.get("url"):
            return link["url"]
    return None


def query_text(value: Any) -> str:
    """A query parameter value as text: booleans as true/false, dates in ISO 8601."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def pagination_error(error: ErrorDetails, field_name: str = "pagination") -> ErrorDetails:
    """A validation error of a config's pagination where a user looks for it: an unknown or
    missing type at ``pagination.type``, a member's error at ``pagination.<field>`` (pydantic
    puts the type's tag in between). Other errors are returned as they are."""
    loc, kind = tuple(error["loc"]), error["type"]
    if not loc or loc[0] != field_name:
        return error
    expected = ", ".join(TYPES)
    if kind == "union_tag_invalid":
        tag = error.get("ctx", {}).get("tag")
        message = f"unknown pagination type {tag!r}: expected one of {expected}"
        return {**error, "loc": (*loc, "type"), "msg": message}
    if kind == "union_tag_not_found":
        return {**error, "loc": (*loc, "type"), "msg": f"a type is needed: one of {expected}"}
    if len(loc) >= 2 and loc[1] in TYPES:
        return {**error, "loc": (loc[0], *loc[2:])}
    return error
