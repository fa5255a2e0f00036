"""Reading a paginated JSON API for ``http_request``: page after page, resumable.

Records come out in batches of about :data:`~nodes.sdk.node.DEFAULT_BATCH_SIZE` (a page is
never split). From time to time — every :data:`SAVE_EVERY_S` seconds or
:data:`SAVE_EVERY_BYTES` of answers, and whenever reading fails — the answers read since the
last save are stored (as received) in the node's :class:`~nodes.builtin.spool.Spool` and the position of the
next page checkpointed. A redelivered node replays what was saved and reads on from that
page: a page saved is never fetched again, and a delivery lost without warning (a worker
killed) fetches again at most what it read since its last save.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from requests import Response

from nodes.builtin.delivery import Delivery, Request
from nodes.builtin.pagination import AnyPagination, PageRequest
from nodes.builtin.paths import MISSING, get_path
from nodes.builtin.spool import Spool
from nodes.sdk.batches import DEFAULT_BATCH_SIZE, Batch
from nodes.sdk.context import ExecutionContext
from nodes.sdk.errors import NodeError

#: Longest time between two saves of the records read (and of the checkpoint), seconds.
SAVE_EVERY_S = 1.0
#: Most bytes of answers read and not saved (they are held in memory until saved).
SAVE_EVERY_BYTES = 16 * 1024 * 1024


@dataclass
class Position:
    """How far a delivery got: pages read, batches saved, and the next page (``None``: the
    end)."""

    pages: int
    batches: int
    next: PageRequest | None

    def as_json(self) -> dict[str, Any]:
        following = self.next.as_json() if self.next is not None else None
        return {"pages": self.pages, "batches": self.batches, "next": following}


@dataclass
class PageReader:
    """Reads the pages ``pagination`` leads to, from ``first`` on, through ``delivery``."""

    delivery: Delivery
    pagination: AnyPagination
    method: str
    body: bytes | None
    records_path: str
    context: ExecutionContext

    def batches(self, first: PageRequest) -> Iterator[Batch]:
        context = self.context
        spool = Spool(context) if context.storage is not None else None
        position = resumed(context, spool)
        if position is not None and position.batches:
            assert spool is not None
            context.logger.info(
                "resuming after page %d (%d saved batches replayed)",
                position.pages,
                position.batches,
            )
            yield from self._replayed(spool, position.batches)
        else:
            position = Position(0, 0, first)
        pending: Batch = []  # read, not output yet
        unsaved: list[bytes] = []  # the answers read since the last save
        held, saved_at = 0, time.monotonic()
        while position.next is not None:
            try:
                records, answer = self._next_page(position)
            except NodeError:
                if spool is not None and unsaved:
                    self._save(spool, position, unsaved)  # a retry reads on from here
                raise
            pending += records
            if answer and spool is not None:
                unsaved.append(answer)
                held += len(answer)
            if pending and (len(pending) >= DEFAULT_BATCH_SIZE or position.next is None):
                due = time.monotonic() - saved_at >= SAVE_EVERY_S or held >= SAVE_EVERY_BYTES
                if unsaved and position.next is not None and due:
                    assert spool is not None
                    self._save(spool, position, unsaved)
                    unsaved, held, saved_at = [], 0, time.monotonic()
                yield pending
                pending = []
        if spool is not None:
            spool.remove(position.batches)
        context.logger.info("read %d pages", position.pages)

    def _replayed(self, spool: Spool, lists: int) -> Iterator[Batch]:
        """The records of the saved answers, in batches as they were read."""
        batch: Batch = []
        for answers in spool.replay(lists):
            for page, answer in enumerate(answers):
                batch += page_records(answer, self.records_path, page)
                if len(batch) >= DEFAULT_BATCH_SIZE:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def _next_page(self, position: Position) -> tuple[Batch, bytes]:
        """Fetch the next page, advance ``position`` past it, and return its records and the
        answer as received."""
        assert position.next is not None
        pagination, page = self.pagination, position.next
        self._check_max_pages(position)
        if position.next is None:
            return [], b""
        if self.context.is_cancelled():
            raise NodeError("cancelled", permanent=True)
        request = Request(self.method, page.url, self.body, page.params or None)
        response, _attempts = self.delivery.send(request)
        answer = _json(response, self.delivery, position.pages)
        records = page_records(answer, self.records_path, position.pages)
        position.pages += 1
        position.next = pagination.next_page(page, answer, response.headers, len(records))
        return records, response.content

    def _check_max_pages(self, position: Position) -> None:
        """At ``max_pages`` with more to read: fail, or end (``on_max_pages: stop``)."""
        limit = getattr(self.pagination, "max_pages", None)
        if limit is None or position.pages < limit:
            return
        if getattr(self.pagination, "on_max_pages", "fail") == "fail":
            raise NodeError(
                f"pagination.max_pages: read {position.pages} pages and the API has more: "
                'raise max_pages, or set "on_max_pages": "stop" to keep what was read',
                permanent=True,
            )
        self.context.logger.warning("stopped at max_pages (%d pages)", position.pages)
        position.next = None

    def _save(self, spool: Spool, position: Position, answers: list[bytes]) -> None:
        spool.save(position.batches, answers)
        position.batches += 1
        self.context.save_checkpoint(position.as_json())


def resumed(context: ExecutionContext, spool: Spool | None) -> Position | None:
    """Where an earlier delivery got, from its checkpoint, if every batch it saved is still
    there; ``None`` to start afresh."""
    checkpoint = context.checkpoint
    if spool is None or not isinstance(checkpoint, dict) or "batches" not in checkpoint:
        return None
    if not spool.complete(checkpoint["batches"]):
        context.logger.warning("the batches saved before are gone: reading from the first page")
        return None
    following = checkpoint["next"]
    return Position(
        checkpoint["pages"],
        checkpoint["batches"],
        PageRequest.from_json(following) if following is not None else None,
    )


def _json(response: Response, delivery: Delivery, page: int) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        quoted = delivery.quote(response)
        raise NodeError(
            f"page {page + 1}: the answer is not JSON: {quoted}", permanent=True
        ) from None


def page_records(answer: Any, path: str, page: int = 0) -> Batch:
    """The records of one page's answer at ``path``: a list of objects, or one object."""
    value = get_path(answer, path) if path else answer
    where = f"page {page + 1}: records_path '{path}'"
    if value is MISSING:
        raise NodeError(f"{where} is not in the answer", permanent=True)
    if value is None:
        return []
    if type(value) is dict:
        return [value]
    if type(value) is not list:
        kind = _json_type(value)
        raise NodeError(f"{where} is a {kind}, not a list or an object", permanent=True)
    for index, item in enumerate(value):
        if type(item) is not dict:
            raise NodeError(
                f"{where}: item {index} is a {_json_type(item)}, not an object", permanent=True
            )
    return value


def _json_type(value: Any) -> str:
    names = {str: "string", int: "number", float: "number", bool: "boolean", list: "list"}
    return names.get(type(value), type(value).__name__)
