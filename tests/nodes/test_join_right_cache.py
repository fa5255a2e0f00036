"""``join`` per partition: the right side is built once per worker process and run, and reused
by the next partitions of the same run (counted builds); another run, another stored right side
or another key rebuilds; the bound still holds; the cache holds one table and forgets a run."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from nodes.builtin.join import RIGHT_TABLES, JoinNode
from nodes.sdk import ExecutionContext, NodeError
from nodes.sdk.run_cache import RunCache, forget_run
from tests.nodes.test_join import reference

Records = list[dict[str, Any]]
CONFIG: dict[str, Any] = {"on": [{"left": "customer_id", "right": "id"}], "how": "left"}
CUSTOMERS: Records = [{"id": i, "name": f"c{i}", "country": "ES" if i % 2 else "FR"}
                      for i in range(50)]  # fmt: skip


class Stream:
    """A stored input as the engine hands it: batches read only when iterated."""

    def __init__(self, records: Records) -> None:
        self.records = records
        self.read = False

    def __iter__(self) -> Iterator[Records]:
        self.read = True
        yield self.records


@pytest.fixture(autouse=True)
def _empty_cache() -> Iterator[None]:
    RIGHT_TABLES.clear()
    yield
    RIGHT_TABLES.clear()


def partition(
    config: dict[str, Any], left: Records, right: Stream, *, run: str = "run-1",
    index: int | None = 0, refs: list[str] | None = None, node: str = "join",
) -> Records:  # fmt: skip
    context = ExecutionContext(
        run_id=run, node_key=node, partition=index,
        input_refs={"right": ["runs/run-1/customers.msgpack"] if refs is None else refs},
    )  # fmt: skip
    out = JoinNode(config).run(context, {"left": iter([left]), "right": right})
    return [record for batch in out for record in batch]  # type: ignore[union-attr]


def orders(rng: random.Random, count: int) -> Records:
    return [{"id": n, "customer_id": rng.choice([None, *range(60)])} for n in range(count)]


def test_partitions_of_one_run_build_the_right_side_once() -> None:
    rng = random.Random(3)
    builds = RIGHT_TABLES.builds
    parts = [orders(rng, rng.randint(0, 200)) for _ in range(5)]
    streams = [Stream(CUSTOMERS) for _ in parts]
    for index, (part, stream) in enumerate(zip(parts, streams, strict=True)):
        got = partition(CONFIG, part, stream, index=index)
        assert got == reference(CONFIG, part, CUSTOMERS)
    assert RIGHT_TABLES.builds - builds == 1
    assert [stream.read for stream in streams] == [True, False, False, False, False]
    assert len(RIGHT_TABLES) == 1


def test_another_run_rebuilds_and_replaces_the_table() -> None:
    builds = RIGHT_TABLES.builds
    first, second, third = Stream(CUSTOMERS), Stream(CUSTOMERS[:10]), Stream(CUSTOMERS[:10])
    partition(CONFIG, [{"customer_id": 20}], first, run="run-1")
    got = partition(CONFIG, [{"customer_id": 20}], second, run="run-2")
    assert got == [{"customer_id": 20, "id": None, "name": None, "country": None}]
    partition(CONFIG, [{"customer_id": 1}], third, run="run-2", index=1)
    assert (first.read, second.read, third.read) == (True, True, False)
    assert RIGHT_TABLES.builds - builds == 2
    assert len(RIGHT_TABLES) == 1  # one table per process: run-1's was dropped


def test_another_right_reference_node_or_key_rebuilds() -> None:
    builds = RIGHT_TABLES.builds
    partition(CONFIG, [], Stream(CUSTOMERS))
    partition(CONFIG, [], Stream(CUSTOMERS), refs=["runs/run-1/other.msgpack"])
    partition(CONFIG, [], Stream(CUSTOMERS), node="join_2")
    by_name = {"on": [{"left": "name", "right": "name"}]}
    assert partition(by_name, [{"name": "c3"}], Stream(CUSTOMERS)) == [
        {"name": "c3", "id": 3, "right_name": "c3", "country": "ES"}
    ]
    assert RIGHT_TABLES.builds - builds == 4


def test_a_join_run_whole_or_without_a_stored_reference_is_not_cached() -> None:
    builds = RIGHT_TABLES.builds
    for _ in range(2):
        whole, unknown = Stream(CUSTOMERS), Stream(CUSTOMERS)
        partition(CONFIG, [{"customer_id": 1}], whole, index=None)
        partition(CONFIG, [{"customer_id": 1}], unknown, refs=[])
        assert whole.read and unknown.read
    assert RIGHT_TABLES.builds == builds and len(RIGHT_TABLES) == 0


def test_the_right_bound_holds_and_a_failed_build_is_not_kept() -> None:
    bounded = {**CONFIG, "right_max_rows": 49}
    for index in range(2):
        with pytest.raises(NodeError, match=r"more than 49 records \(right_max_rows = 49\)"):
            partition(bounded, [{"customer_id": 1}], Stream(CUSTOMERS), index=index)
    assert len(RIGHT_TABLES) == 0


def test_a_run_that_ended_is_forgotten() -> None:
    partition(CONFIG, [], Stream(CUSTOMERS), run="run-9")
    assert len(RIGHT_TABLES) == 1
    assert forget_run("run-8") == 0 and forget_run("run-9") == 1
    assert len(RIGHT_TABLES) == 0


def test_a_cache_drops_the_least_recently_used_before_building() -> None:
    cache: RunCache[list[int]] = RunCache("test", size=2)
    held: list[int] = []

    def build(n: int) -> list[int]:
        held.append(len(cache))  # values held while this one is built
        return [n]

    assert cache.get("r", "a", lambda: build(1)) == [1]
    assert cache.get("r", "b", lambda: build(2)) == [2]
    assert cache.get("r", "a", lambda: build(9)) == [1]  # a is now the most recently used
    assert cache.get("r", "c", lambda: build(3)) == [3]  # b dropped before c was built
    assert cache.get("r", "b", lambda: build(4)) == [4]
    assert held == [0, 1, 1, 1] and cache.builds == 4
    with pytest.raises(ValueError, match="at least one"):
        RunCache("empty", size=0)
