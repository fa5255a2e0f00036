"""The ``aggregate`` node: partials merged over any cut equal the whole input (several seeds),
exact sums, SQL nulls, time buckets across clock changes, bounds and save-time type checks."""

from __future__ import annotations

import datetime as dt
import math
import random
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from nodes.builtin.aggregate import AggregateConfig, AggregateNode, Groups
from nodes.sdk import ExecutionContext, FieldType, NodeError, RecordSchema

Records = list[dict[str, Any]]
MADRID = ZoneInfo("Europe/Madrid")
EVERY_OP = [
    {"op": "count", "as": "n"},
    {"op": "count", "field": "amount", "as": "n_amount"},
    {"op": "sum", "field": "amount", "as": "total"},
    {"op": "avg", "field": "amount", "as": "mean"},
    {"op": "min", "field": "amount", "as": "low"},
    {"op": "max", "field": "at", "as": "latest"},
    {"op": "count_distinct", "field": "customer", "as": "customers"},
    {"op": "first", "field": "customer", "as": "first_customer"},
    {"op": "last", "field": "customer", "as": "last_customer"},
]


def aggregated(config: dict[str, Any], batches: list[Records]) -> Records:
    out = AggregateNode(config).run(ExecutionContext(), {"in": iter(batches)})
    return [record for batch in out for record in batch]  # type: ignore[union-attr]


def random_orders(rng: random.Random, count: int, amounts: str) -> Records:
    start = dt.datetime(2026, 3, 28, tzinfo=dt.UTC)
    records = []
    for _ in range(count):
        if amounts == "decimal":
            amount: Any = Decimal(rng.randint(-5000, 99999)) / 100
        elif amounts == "float":
            amount = rng.choice([rng.uniform(-1e6, 1e6), rng.uniform(-1e-3, 1e-3), 1e16, 1.0])
        else:
            amount = rng.randint(-(10**20), 10**20)
        records.append(
            {
                "country": rng.choice(["ES", "FR", "DE", None]),
                "amount": None if rng.random() < 0.1 else amount,
                "customer": rng.choice([None, *range(30)]),
                "at": start + dt.timedelta(minutes=rng.randint(0, 3 * 24 * 60)),
            }
        )
    return records


def parts(records: Records, rng: random.Random, count: int) -> list[Records]:
    cuts = sorted(rng.sample(range(len(records) + 1), count - 1))
    return [records[a:b] for a, b in zip([0, *cuts], [*cuts, len(records)], strict=True)]


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("amounts", ["decimal", "float", "int"])
def test_partials_merged_in_order_equal_the_whole_input(seed: int, amounts: str) -> None:
    rng = random.Random(seed)
    records = random_orders(rng, rng.randint(0, 600), amounts)
    config = AggregateConfig.model_validate(
        {
            "group_by": ["country"] if seed % 2 else [],
            "aggregations": EVERY_OP,
            "time_bucket": {"field": "at", "every": rng.choice(["1d", "1h", "15m"]),
                            "timezone": "Europe/Madrid", "as": "bucket"} if seed % 3 else None,
        }
    )  # fmt: skip
    whole = Groups(config)
    whole.add(records)
    combined = Groups(config)
    for part in parts(records, rng, rng.randint(1, 7)):
        partial = Groups(config)
        partial.add(part)
        combined.merge(partial)
    expected, got = list(whole.records()), list(combined.records())
    assert got == expected
    assert [type(r.get("total")) for r in got] == [type(r.get("total")) for r in expected]


def test_decimal_sums_are_exact_past_28_digits() -> None:
    amounts = [Decimal("12345678901234567890123456.01"), Decimal("0.000000001"), Decimal("1")]
    (row,) = aggregated(
        {"aggregations": [{"op": "sum", "field": "a", "as": "s"}]}, [[{"a": a} for a in amounts]]
    )
    assert row["s"] == Decimal("12345678901234567890123457.010000001")


def test_float_sums_are_rounded_once() -> None:
    values = [1e16, 1.0, -1e16] * 3 + [0.1] * 10
    (row,) = aggregated(
        {"aggregations": [{"op": "sum", "field": "a", "as": "s"}]}, [[{"a": v} for v in values]]
    )
    assert row["s"] == math.fsum(values) == 4.0


def test_nulls_are_ignored_as_sql_ignores_them() -> None:
    records = [{"g": "a", "x": None}, {"g": "a", "x": None}, {"g": "b", "x": 2}, {"g": "b"}]
    config = {
        "group_by": ["g"],
        "aggregations": [
            {"op": "count", "as": "rows"},
            {"op": "count", "field": "x", "as": "xs"},
            {"op": "sum", "field": "x", "as": "sum"},
            {"op": "avg", "field": "x", "as": "avg"},
            {"op": "min", "field": "x", "as": "min"},
            {"op": "first", "field": "x", "as": "first"},
        ],
    }
    assert aggregated(config, [records]) == [
        {"g": "a", "rows": 2, "xs": 0, "sum": None, "avg": None, "min": None, "first": None},
        {"g": "b", "rows": 2, "xs": 1, "sum": 2, "avg": 2.0, "min": 2, "first": 2},
    ]


def test_no_group_by_gives_one_total_even_of_nothing() -> None:
    config = {"aggregations": [{"op": "count", "as": "n"}, {"op": "sum", "field": "x", "as": "s"}]}
    assert aggregated(config, []) == [{"n": 0, "s": None}]
    assert aggregated({**config, "group_by": ["g"]}, []) == []


def test_decimal_average_is_a_decimal() -> None:
    config = {"aggregations": [{"op": "avg", "field": "x", "as": "m"}]}
    (row,) = aggregated(config, [[{"x": Decimal("1")}, {"x": Decimal("2")}, {"x": 4}]])
    assert row["m"] == Decimal("7") / Decimal("3")


def test_day_buckets_follow_the_zone_across_the_spring_clock_change() -> None:
    # 2026-03-29: Madrid goes from +01:00 to +02:00 at 02:00 local.
    times = [
        dt.datetime(2026, 3, 28, 22, 59, tzinfo=dt.UTC),  # 23:59 on the 28th in Madrid
        dt.datetime(2026, 3, 28, 23, 0, tzinfo=dt.UTC),  # 00:00 on the 29th
        dt.datetime(2026, 3, 29, 21, 59, tzinfo=dt.UTC),  # 23:59 on the 29th (+02:00)
        dt.datetime(2026, 3, 29, 22, 0, tzinfo=dt.UTC),  # 00:00 on the 30th
    ]
    config = {
        "aggregations": [{"op": "count", "as": "n"}],
        "time_bucket": {"field": "at", "every": "1d", "timezone": "Europe/Madrid", "as": "day"},
    }
    rows = aggregated(config, [[{"at": t} for t in times]])
    assert [(r["day"].isoformat(), r["n"]) for r in rows] == [
        ("2026-03-28T00:00:00+01:00", 1),
        ("2026-03-29T00:00:00+01:00", 2),
        ("2026-03-30T00:00:00+02:00", 1),
    ]


def test_hour_buckets_keep_the_repeated_hour_of_autumn_apart() -> None:
    # 2026-10-25: Madrid goes back from 03:00 +02:00 to 02:00 +01:00.
    first = dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.UTC)  # 02:30 +02:00
    second = dt.datetime(2026, 10, 25, 1, 30, tzinfo=dt.UTC)  # 02:30 +01:00
    config = {
        "aggregations": [{"op": "count", "as": "n"}],
        "time_bucket": {"field": "at", "every": "1h", "timezone": "Europe/Madrid"},
    }
    rows = aggregated(config, [[{"at": first}, {"at": second}, {"at": "2026-10-25T01:45:00Z"}]])
    assert [(r["at"].isoformat(), r["n"]) for r in rows] == [
        ("2026-10-25T02:00:00+02:00", 1),
        ("2026-10-25T02:00:00+01:00", 2),
    ]


def test_quarter_hours_and_naive_times_read_as_utc() -> None:
    config = {
        "aggregations": [{"op": "count", "as": "n"}],
        "time_bucket": {"field": "at", "every": "15m", "as": "q"},
    }
    (row,) = aggregated(config, [[{"at": dt.datetime(2026, 1, 1, 10, 44)}]])
    assert row["q"] == dt.datetime(2026, 1, 1, 10, 30, tzinfo=ZoneInfo("UTC"))


@pytest.mark.parametrize(
    ("bucket", "message"),
    [
        ({"every": "7m"}, "does not divide an hour evenly"),
        ({"every": "2d"}, "one day long"),
        ({"every": "1w"}, "not a bucket length"),
        ({"every": "1d", "timezone": "Mars/Olympus"}, "unknown time zone"),
    ],
)
def test_bad_buckets_are_refused(bucket: dict[str, Any], message: str) -> None:
    config = {"aggregations": [{"op": "count"}], "time_bucket": {"field": "at", **bucket}}
    with pytest.raises(ValidationError, match=message):
        AggregateNode(config)


def test_the_number_of_groups_is_bounded() -> None:
    config = {"group_by": ["g"], "aggregations": [{"op": "count"}], "max_groups": 10}
    with pytest.raises(NodeError, match=r"more than 10 groups \(max_groups = 10\)"):
        aggregated(config, [[{"g": i} for i in range(11)]])
    distinct = {"aggregations": [{"op": "count_distinct", "field": "g"}], "max_groups": 10}
    with pytest.raises(NodeError, match=r"more than 10 different values"):
        aggregated(distinct, [[{"g": i} for i in range(11)]])


def test_text_in_a_sum_fails_naming_the_aggregation() -> None:
    config = {"aggregations": [{"op": "count"}, {"op": "sum", "field": "x", "as": "s"}]}
    with pytest.raises(NodeError) as caught:
        aggregated(config, [[{"x": 1}, {"x": "12.50"}]])
    assert caught.value.permanent
    assert str(caught.value) == "aggregations[1] (sum of 'x'): '12.50' is not a number"


ORDERS = RecordSchema(
    {"country": FieldType.STRING, "amount": FieldType.DECIMAL, "qty": FieldType.INTEGER,
     "at": FieldType.DATETIME, "name": FieldType.STRING}
)  # fmt: skip


def test_output_schema_is_derived() -> None:
    node = AggregateNode(
        {
            "group_by": ["country"],
            "time_bucket": {"field": "at", "every": "1d", "as": "day"},
            "aggregations": [
                {"op": "sum", "field": "amount", "as": "revenue"},
                {"op": "avg", "field": "qty", "as": "mean_qty"},
                {"op": "count"},
                {"op": "max", "field": "name"},
            ],
        }
    )
    assert node.output_schema({"in": ORDERS}).as_dict() == {
        "country": "string", "day": "datetime", "revenue": "decimal", "mean_qty": "float",
        "count": "integer", "max_name": "string",
    }  # fmt: skip


def test_check_refuses_sum_of_text_and_missing_fields() -> None:
    node = AggregateNode(
        {
            "group_by": ["region"],
            "time_bucket": {"field": "country", "every": "1d"},
            "aggregations": [{"op": "sum", "field": "name"}, {"op": "min", "field": "nope"}],
        }
    )
    problems = {p.path: p.message for p in node.check({"in": ORDERS})}
    assert problems["config.aggregations[0].field"] == (
        "cannot sum 'name', a string field (sum needs integer, float or decimal values)"
    )
    assert problems["config.aggregations[1].field"].startswith("field 'nope' does not exist")
    assert problems["config.group_by[0]"].startswith("field 'region' does not exist")
    assert set(problems) == {
        "config.aggregations[0].field", "config.aggregations[1].field", "config.group_by[0]"
    }  # fmt: skip
    timed = AggregateNode(
        {"aggregations": [{"op": "count"}], "time_bucket": {"field": "qty", "every": "1h"}}
    )
    (problem,) = timed.check({"in": ORDERS})
    assert problem.path == "config.time_bucket.field" and "integer field" in problem.message


def test_outputs_written_twice_are_refused() -> None:
    with pytest.raises(ValidationError, match="'n' is written twice"):
        AggregateNode({"group_by": ["n"], "aggregations": [{"op": "count", "as": "n"}]})
    with pytest.raises(ValidationError, match="'sum' needs a field"):
        AggregateNode({"aggregations": [{"op": "sum"}]})
