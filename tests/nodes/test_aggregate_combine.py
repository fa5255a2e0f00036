"""``aggregate`` as a combinable node: one stored partial state per partition, then one combine,
gives exactly what ``execute`` gives on the whole input (several seeds, random partitions, empty
ones included), through the capability functions the engine calls (the partial states packed
to bytes and back, as stored)."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

import pytest

from nodes.builtin.aggregate import AggregateNode
from nodes.sdk import ExecutionContext, NodeError, RowBatch
from nodes.sdk import capabilities as caps
from tests.nodes.test_aggregate import EVERY_OP, Records, random_orders

WIDE = [*EVERY_OP, {"op": "max", "field": "amount", "as": "high"},
        {"op": "first", "field": "at", "as": "first_at"},
        {"op": "last", "field": "amount", "as": "last_amount"}]  # fmt: skip


def whole(node: AggregateNode, records: Records) -> Records:
    out = node.run(ExecutionContext(), {"in": iter([records] if records else [])})
    return [record for batch in out for record in batch]  # type: ignore[union-attr]


def combined(node: AggregateNode, partitions: list[Records], rows: bool = False) -> Records:
    partials = [
        caps.run_partial(node, ExecutionContext(partition=index), {"in": batches(part, rows)})
        for index, part in enumerate(partitions)
    ]
    assert all(isinstance(partial, bytes) for partial in partials)
    out = caps.run_combine(node, ExecutionContext(), partials)
    return [record for batch in out for record in batch]


def batches(part: Records, rows: bool) -> list[Any]:
    """A partition's input in batches of up to 50 records (row batches when ``rows``)."""
    cut = [part[start : start + 50] for start in range(0, len(part), 50)]
    if not rows:
        return cut
    names = ["country", "amount", "customer", "at"]
    return [RowBatch(names, [tuple(r[n] for n in names) for r in piece]) for piece in cut]


def random_partitions(records: Records, rng: random.Random) -> list[Records]:
    """Consecutive parts at random cuts; cuts may repeat, so some partitions are empty."""
    count = rng.randint(1, 9)
    cuts = sorted(rng.choice(range(len(records) + 1)) for _ in range(count - 1))
    return [records[a:b] for a, b in zip([0, *cuts], [*cuts, len(records)], strict=True)]


def strictly(records: Records) -> list[list[tuple[str, str, str]]]:
    """Records with each value's type and repr: equal values of another type (1 and 1.0, a
    Decimal and a float) or datetimes at another zone do not compare equal here."""
    return [
        [(name, type(value).__name__, repr(value)) for name, value in record.items()]
        for record in records
    ]


@pytest.mark.parametrize("seed", range(1, 11))
@pytest.mark.parametrize("amounts", ["decimal", "float", "int"])
def test_combined_partials_equal_the_whole_input(seed: int, amounts: str) -> None:
    rng = random.Random(seed * 1000 + len(amounts))
    records = random_orders(rng, rng.choice([0, 1, rng.randint(2, 700)]), amounts)
    zone = rng.choice(["Europe/Madrid", "UTC", "America/New_York"])
    bucket = {"field": "at", "every": rng.choice(["1d", "1h", "15m"]), "timezone": zone, "as": "b"}
    node = AggregateNode(
        {
            "group_by": rng.choice([[], ["country"], ["country", "customer"]]),
            "aggregations": WIDE,
            "time_bucket": bucket if rng.random() < 0.6 else None,
        }
    )
    expected = whole(node, records)
    got = combined(node, random_partitions(records, rng), rows=seed % 2 == 0)
    assert got == expected
    assert strictly(got) == strictly(expected)


def test_decimal_sums_and_averages_combine_exactly() -> None:
    sums = [{"op": "sum", "field": "x", "as": "s"}, {"op": "avg", "field": "x", "as": "m"}]
    node = AggregateNode({"aggregations": sums})
    parts = [
        [{"x": Decimal("12345678901234567890123456.01")}, {"x": None}],
        [],
        [{"x": Decimal("0.000000001")}, {"x": 1}, {"x": 10**30}],
    ]
    (row,) = combined(node, parts)
    assert row["s"] == Decimal("1000012345678901234567890123457.010000001")
    # avg: the exact sum over the exact count (4 values, the null ignored), divided once
    assert row["m"] == row["s"] / 4
    assert (row,) == tuple(whole(node, [r for part in parts for r in part]))


def test_integer_sums_past_64_bits_survive_the_stored_state() -> None:
    node = AggregateNode({"aggregations": [{"op": "sum", "field": "x", "as": "s"}]})
    assert combined(node, [[{"x": 2**63 - 1}, {"x": 2**63}], [{"x": -(2**70)}]]) == [
        {"s": 2**63 - 1 + 2**63 - 2**70}
    ]


def test_nulls_are_ignored_across_partitions() -> None:
    node = AggregateNode(
        {
            "group_by": ["g"],
            "aggregations": [
                {"op": "count", "as": "rows"},
                {"op": "count", "field": "x", "as": "xs"},
                {"op": "sum", "field": "x", "as": "sum"},
                {"op": "min", "field": "x", "as": "min"},
                {"op": "first", "field": "x", "as": "first"},
                {"op": "last", "field": "x", "as": "last"},
                {"op": "count_distinct", "field": "x", "as": "distinct"},
            ],
        }
    )
    parts = [[{"g": "a", "x": None}], [{"g": "a", "x": 3}, {"g": "b"}], [{"g": "a", "x": None}]]
    assert combined(node, parts) == [
        {"g": "a", "rows": 3, "xs": 1, "sum": 3, "min": 3, "first": 3, "last": 3, "distinct": 1},
        {"g": "b", "rows": 1, "xs": 0, "sum": None, "min": None, "first": None, "last": None,
         "distinct": 0},
    ]  # fmt: skip


def test_first_and_last_follow_partition_order_then_row_order() -> None:
    node = AggregateNode(
        {
            "group_by": ["g"],
            "aggregations": [
                {"op": "first", "field": "x", "as": "first"},
                {"op": "last", "field": "x", "as": "last"},
            ],
        }
    )
    parts = [[{"g": "b", "x": 1}, {"g": "a", "x": 2}], [{"g": "a", "x": 3}, {"g": "b", "x": 4}]]
    assert combined(node, parts) == [
        {"g": "b", "first": 1, "last": 4},  # groups in the order they first appear
        {"g": "a", "first": 2, "last": 3},
    ]


def test_no_partition_or_only_empty_ones_give_what_no_input_gives() -> None:
    total = AggregateNode(
        {"aggregations": [{"op": "count", "as": "n"}, {"op": "avg", "field": "x"}]}
    )
    assert (
        combined(total, [])
        == combined(total, [[], []])
        == whole(total, [])
        == [{"n": 0, "avg_x": None}]
    )
    grouped = AggregateNode({"group_by": ["g"], "aggregations": [{"op": "count"}]})
    assert combined(grouped, [[], [], []]) == whole(grouped, []) == []


def test_keys_of_json_values_and_nested_paths_combine() -> None:
    node = AggregateNode(
        {
            "group_by": ["tags", "customer.id"],
            "aggregations": [{"op": "count"}, {"op": "count_distinct", "field": "doc"}],
        }
    )
    records = [
        {"tags": ["x", "y"], "customer": {"id": 1}, "doc": {"a": [1, 2]}},
        {"tags": ["x", "y"], "customer": {"id": 1}, "doc": {"a": [1, 2]}},
        {"tags": ["x"], "customer": {"id": 2}, "doc": [1]},
        {"tags": ["x", "y"], "customer": {"id": 1}, "doc": {"a": [2, 1]}},
    ]
    for cut in range(len(records) + 1):
        assert combined(node, [records[:cut], records[cut:]]) == whole(node, records)


def test_the_group_bound_holds_when_partials_combine() -> None:
    node = AggregateNode({"group_by": ["g"], "aggregations": [{"op": "count"}], "max_groups": 5})
    parts = [[{"g": i} for i in range(4)], [{"g": i} for i in range(2, 6)]]  # 6 groups in all
    with pytest.raises(NodeError, match=r"more than 5 groups \(max_groups = 5\)") as caught:
        combined(node, parts)
    assert caught.value.permanent
    assert [r["count"] for r in combined(node, [parts[0], parts[0]])] == [2, 2, 2, 2]


def test_count_distinct_fails_clearly_past_max_groups_when_combined() -> None:
    node = AggregateNode(
        {"aggregations": [{"op": "count_distinct", "field": "v", "as": "d"}], "max_groups": 5}
    )
    parts = [[{"v": i} for i in range(3)], [{"v": i} for i in range(3)], [{"v": 3}, {"v": 4}]]
    assert combined(node, parts) == [{"d": 5}]
    with pytest.raises(NodeError, match=r"more than 5 different values to count") as caught:
        combined(node, [*parts, [{"v": "five"}]])
    assert "max_groups = 5" in str(caught.value) and caught.value.permanent


def test_time_buckets_come_back_in_their_zone() -> None:
    node = AggregateNode(
        {
            "aggregations": [{"op": "count", "as": "n"}],
            "time_bucket": {"field": "at", "every": "1h", "timezone": "Europe/Madrid"},
        }
    )
    # 2026-10-25: the hour 02:00 happens twice in Madrid (two buckets, two instants).
    first = dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.UTC)
    second = dt.datetime(2026, 10, 25, 1, 30, tzinfo=dt.UTC)
    parts = [[{"at": first}], [{"at": second}], [{"at": "2026-10-25T01:45:00Z"}, {"at": None}]]
    got = combined(node, parts)
    assert strictly(got) == strictly(whole(node, [r for part in parts for r in part]))
    assert [(r["at"] and r["at"].isoformat(), r["n"]) for r in got] == [
        ("2026-10-25T02:00:00+02:00", 1),
        ("2026-10-25T02:00:00+01:00", 2),
        (None, 1),
    ]


@pytest.mark.parametrize("data", [b"\x90", b"", b"\xc1", caps.pack_partial([]) + b"\x01"])
def test_a_partial_state_of_another_format_is_refused(data: bytes) -> None:
    node = AggregateNode({"aggregations": [{"op": "count"}]})
    with pytest.raises(NodeError, match="not in a format this version reads") as caught:
        list(caps.run_combine(node, ExecutionContext(), [data]))
    assert caught.value.permanent


def test_a_state_of_values_the_platform_cannot_store_is_refused() -> None:
    with pytest.raises(NodeError, match="a partial state cannot be stored") as caught:
        caps.pack_partial([object()])
    assert caught.value.permanent
    assert caps.unpack_partial(caps.pack_partial({"a": [Decimal("1.10"), 2**70]})) == {
        "a": [Decimal("1.10"), 2**70]
    }


def test_aggregate_declares_the_capability() -> None:
    assert caps.is_combinable(AggregateNode)
    assert caps.combinable_with(AggregateNode, {"aggregations": [{"op": "count"}]})
