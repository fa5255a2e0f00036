"""Records a source has already read, kept so that a redelivered source can replay them.

A source that reads a remote API cannot read its first pages again for free (they cost
requests, and may have changed). It saves each batch of records it reads to the node scratch
storage (``ExecutionContext.storage``) before checkpointing its position; a redelivery
replays the saved batches, then goes on from the checkpointed position. The batches live
beside the run's other data (``runs/<run>/<node>.read-<n>.json``), so they are removed with
it; the node removes them itself once it has finished reading.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
from django.core.files.base import ContentFile

from nodes.sdk.context import ExecutionContext
from nodes.sdk.node import Batch


class Spool:
    """Numbered batches of one node run in the scratch storage."""

    def __init__(self, context: ExecutionContext) -> None:
        self.storage: Any = context.storage
        self.prefix = f"runs/{context.run_id}/{context.node_key}.read-"

    def name(self, index: int) -> str:
        return f"{self.prefix}{index:05d}.json"

    def save(self, index: int, batch: Batch) -> None:
        """Store batch ``index`` (replacing what an interrupted delivery left there)."""
        name = self.name(index)
        if self.storage.exists(name):
            self.storage.delete(name)
        self.storage.save(name, ContentFile(orjson.dumps(batch), name=name))

    def complete(self, count: int) -> bool:
        """Whether batches ``0 .. count - 1`` are all there."""
        return all(self.storage.exists(self.name(index)) for index in range(count))

    def replay(self, count: int) -> Iterator[Batch]:
        for index in range(count):
            with self.storage.open(self.name(index), "rb") as stream:
                batch: Batch = orjson.loads(stream.read())
            yield batch

    def remove(self, count: int) -> None:
        for index in range(count):
            self.storage.delete(self.name(index))
