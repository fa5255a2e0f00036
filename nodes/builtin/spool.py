"""What a source has already read, kept so that a redelivered source can replay it.

A source that reads a remote API cannot read its first pages again for free (they cost
requests, and may have changed). It saves the answers it read, as numbered lists of JSON
documents, to the node scratch storage (``ExecutionContext.storage``) before checkpointing its
position; a redelivery replays the saved answers, then goes on from the checkpointed
position. An answer is saved as the bytes received (each list is written without parsing or
encoding a value again). The lists live beside the run's other data
(``runs/<run>/<node>.read-<n>.json``), so they are removed with it; the node removes them
itself once it has finished reading.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
from django.core.files.base import ContentFile

from nodes.sdk.context import ExecutionContext


class Spool:
    """Numbered lists of JSON documents of one node run, in the scratch storage."""

    def __init__(self, context: ExecutionContext) -> None:
        self.storage: Any = context.storage
        self.prefix = f"runs/{context.run_id}/{context.node_key}.read-"

    def name(self, index: int) -> str:
        return f"{self.prefix}{index:05d}.json"

    def save(self, index: int, documents: list[bytes]) -> None:
        """Store list ``index`` of JSON ``documents`` (each valid JSON text), replacing what an
        interrupted delivery left there."""
        name = self.name(index)
        if self.storage.exists(name):
            self.storage.delete(name)
        body = orjson.dumps(list(map(orjson.Fragment, documents)))
        self.storage.save(name, ContentFile(body, name=name))

    def complete(self, count: int) -> bool:
        """Whether lists ``0 .. count - 1`` are all there."""
        return all(self.storage.exists(self.name(index)) for index in range(count))

    def replay(self, count: int) -> Iterator[list[Any]]:
        """The documents of lists ``0 .. count - 1``, parsed, one list at a time."""
        for index in range(count):
            with self.storage.open(self.name(index), "rb") as stream:
                documents: list[Any] = orjson.loads(stream.read())
            yield documents

    def remove(self, count: int) -> None:
        for index in range(count):
            self.storage.delete(self.name(index))
