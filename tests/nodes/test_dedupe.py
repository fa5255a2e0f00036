"""The ``dedupe`` node: first and last against a reference over several seeds, the bound."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

from nodes.builtin.dedupe import DedupeNode
from nodes.sdk import ExecutionContext, FieldType, NodeError, RecordSchema
from nodes.sdk import capabilities as caps

Records = list[dict[str, Any]]


def deduped(config: dict[str, Any], batches: list[Records]) -> Records:
    out = DedupeNode(config).run(ExecutionContext(), {"in": iter(batches)})
    return [record for batch in out for record in batch]  # type: ignore[union-attr]


def reference(records: Records, key: list[str], keep: str) -> Records:
    """One record per key by a quadratic scan: the first of its key, or the last."""

    def k(record: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(record.get(name) for name in key)

    if keep == "first":
        return [r for i, r in enumerate(records) if all(k(o) != k(r) for o in records[:i])]
    return [r for i, r in enumerate(records) if all(k(o) != k(r) for o in records[i + 1 :])]


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("keep", ["first", "last"])
def test_dedupe_keeps_the_first_or_last_of_each_key(seed: int, keep: str) -> None:
    rng = random.Random(seed)
    records = [
        {"i": i, "email": rng.choice(["a@x", "b@x", "c@x", None]), "tags": rng.choice([[1], [2]])}
        for i in range(rng.randint(0, 300))
    ]
    key = ["email", "tags"] if seed % 2 else ["email"]
    cuts = sorted(rng.sample(range(len(records) + 1), 3))
    batches = [records[a:b] for a, b in zip([0, *cuts], [*cuts, len(records)], strict=True)]
    assert deduped({"key": key, "keep": keep}, batches) == reference(records, key, keep)


@pytest.mark.parametrize("keep", ["first", "last"])
def test_more_keys_than_the_bound_fail_naming_it(keep: str) -> None:
    with pytest.raises(NodeError, match=r"more than 5 different keys \(max_keys = 5\)"):
        deduped({"key": ["i"], "keep": keep, "max_keys": 5}, [[{"i": i} for i in range(6)]])
    assert len(deduped({"key": ["i"], "keep": keep, "max_keys": 5}, [[{"i": 1}] * 50])) == 1


def test_schema_passes_through_and_keys_are_checked() -> None:
    schema = RecordSchema({"id": FieldType.INTEGER})
    node = DedupeNode({"key": ["id", "email"]})
    assert node.output_schema({"in": schema}) == schema
    (problem,) = node.check({"in": schema})
    assert problem.path == "config.key[1]"


def combined(config: dict[str, Any], partitions: list[Records]) -> Records:
    node = DedupeNode(config)
    partials = [
        caps.run_partial(node, ExecutionContext(partition=index), {"in": iter([part])})
        for index, part in enumerate(partitions)
    ]
    return [
        record for batch in caps.run_combine(node, ExecutionContext(), partials) for record in batch
    ]


@pytest.mark.parametrize("seed", range(1, 9))
@pytest.mark.parametrize("keep", ["first", "last"])
def test_partials_combined_equal_the_whole_input(seed: int, keep: str) -> None:
    rng = random.Random(seed)
    records = [
        {"i": i, "email": rng.choice(["a@x", "b@x", "c@x", None]), "tags": rng.choice([[1], [2]]),
         "at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=i)}
        for i in range(rng.randint(0, 1500))
    ]  # fmt: skip
    config = {"key": ["email", "tags"] if seed % 2 else ["email"], "keep": keep}
    cuts = sorted(rng.choice(range(len(records) + 1)) for _ in range(rng.randint(0, 8)))
    parts = [records[a:b] for a, b in zip([0, *cuts], [*cuts, len(records)], strict=True)]
    expected = deduped(config, [records] if records else [])
    assert combined(config, parts) == expected == reference(records, config["key"], keep)


def test_the_key_bound_holds_when_partials_combine() -> None:
    for keep in ("first", "last"):
        config = {"key": ["k"], "keep": keep, "max_keys": 3}
        parts = [[{"k": 1}, {"k": 2}], [{"k": 2}, {"k": 3}], [{"k": 1}]]
        assert [r["k"] for r in combined(config, parts)] == (
            [1, 2, 3] if keep == "first" else [2, 3, 1]
        )
        with pytest.raises(NodeError, match=r"more than 3 different keys \(max_keys = 3\)"):
            combined(config, [*parts, [{"k": 4}]])
