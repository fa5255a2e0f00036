"""Streaming: nodes and the hand-off hold a batch at a time, whatever the input size."""

from __future__ import annotations

import itertools
import tracemalloc
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.core.files.storage import FileSystemStorage

from flows.engine.handoff import read_output, write_batches, write_manifest, write_partitions
from nodes.builtin.filter import FilterNode
from nodes.builtin.map_fields import MapFieldsNode
from nodes.sdk import ExecutionContext

ROWS = 200_000
BATCH = 1000


class Source:
    """Generates ``ROWS`` records lazily, and counts the batches taken so far."""

    def __init__(self) -> None:
        self.taken = 0

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        for start in range(0, ROWS, BATCH):
            self.taken += 1
            yield [
                {"id": i, "status": ("paid", "open")[i % 2], "amount": Decimal(i % 97) / 4}
                for i in range(start, start + BATCH)
            ]


def test_nodes_pull_their_input_lazily_and_yield_bounded_batches() -> None:
    source = Source()
    keep = FilterNode({"conditions": [{"field": "status", "op": "eq", "value": "paid"}]})
    shape = MapFieldsNode(
        {"mapping": {"order": "id", "total": {"source": "amount", "cast": "str"}}}
    )
    context = ExecutionContext()
    output = shape.execute(context, {"in": keep.execute(context, {"in": source})})
    first = next(output)
    assert source.taken == 1  # one batch in, one batch out: nothing read ahead
    sizes = [len(first), *(len(batch) for batch in output)]
    assert max(sizes) <= BATCH
    assert sum(sizes) == ROWS // 2
    assert source.taken == ROWS // BATCH


def test_the_hand_off_streams_a_large_output_in_bounded_memory(tmp_path: Path) -> None:
    storage = FileSystemStorage(location=tmp_path)
    tracemalloc.start()
    try:
        rows = write_batches("runs/r/big.msgpack", Source(), storage)
        parts = write_partitions("r", "split", Source(), 30_000, storage=storage)
        write_manifest("runs/r/split.partitions.json", parts, storage)
        sizes = [len(b) for b in read_output("runs/r/split.partitions.json", storage)]
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows == ROWS == sum(sizes)
    assert max(sizes) <= BATCH
    assert [p.rows_out for p in parts] == [30_000] * 6 + [20_000]
    # 200,000 records take well over 50 MB as Python objects; a few batches take under 20 MB.
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    first = next(iter(read_output("runs/r/big.msgpack", storage)))
    assert first[:2] == list(itertools.islice(next(iter(Source())), 2))
