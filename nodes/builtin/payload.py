"""``payload``: the records a trigger sent with the run (a webhook's JSON body)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import Field

from nodes.builtin.paths import MISSING, get_path
from nodes.sdk.batches import DEFAULT_BATCH_SIZE, AnyBatch, RecordStream
from nodes.sdk.context import ExecutionContext
from nodes.sdk.errors import NodeError
from nodes.sdk.node import Node, NodeConfig
from nodes.sdk.ports import Port
from nodes.sdk.schema import RecordSchema


class PayloadConfig(NodeConfig):
    """Where the records are in the payload."""

    records_path: str = Field(
        "",
        pattern=r"^([A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*)?$",
        description="Dotted path to the records in the payload (e.g. 'data.orders'); empty: "
        "the whole payload. A list gives one record per object, an object gives one record.",
    )
    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1, le=100_000, description="Records per batch.")


class PayloadNode(Node[PayloadConfig]):
    """A source: the run's payload as records (nothing when the run has no payload)."""

    type = "payload"
    version = 1
    label = "Payload"
    description = "The records of the run's payload: a webhook's JSON body, an arriving file."
    category = "source"
    inputs = ()
    outputs = (Port("out", description="One record per object at records_path."),)

    def output_schema(self, inputs: Mapping[str, RecordSchema]) -> RecordSchema:
        return RecordSchema.unknown()

    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, RecordStream]
    ) -> Iterator[AnyBatch]:
        records = self._records(context.payload)
        size = self.config.batch_size
        for start in range(0, len(records), size):
            yield records[start : start + size]

    def _records(self, payload: Any) -> list[dict[str, Any]]:
        if payload is None:
            return []
        path = self.config.records_path
        found = get_path(payload, path) if path else payload
        if found is MISSING or found is None:
            return []
        items = found if isinstance(found, list) else [found]
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                where = f"{path or 'payload'}[{index}]"
                raise NodeError(
                    f"{where} is a {type(item).__name__}, not an object", permanent=True
                )
        return items
