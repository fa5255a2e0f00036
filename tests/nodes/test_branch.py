"""The ``branch`` node: routes are filters, ports come from the config, each port carries the
input's schema."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from nodes.builtin.branch import BranchNode
from nodes.builtin.filter import FilterNode
from nodes.sdk import ExecutionContext, FieldType, PortBatch, RecordSchema, RowBatch
from nodes.sdk import capabilities as caps

ORDERS: list[dict[str, Any]] = [
    {"id": 1, "status": "paid", "amount": Decimal("10.50"), "country": "ES"},
    {"id": 2, "status": "refunded", "amount": Decimal("99.99"), "country": "FR"},
    {"id": 3, "status": "paid", "amount": Decimal("250"), "country": "FR"},
    {"id": 4, "status": None, "amount": None, "country": None},
]


def routed(config: dict[str, Any], batches: list[list[dict[str, Any]]]) -> dict[str, list[Any]]:
    node = BranchNode(config)
    out: dict[str, list[Any]] = {port.name: [] for port in node.output_ports()}
    for item in node.run(ExecutionContext(), {"in": iter(batches)}):
        assert isinstance(item, PortBatch)
        assert item.batch, "no empty batch is sent"
        out[item.port].extend(item.batch)
    return out


PAID = {"port": "paid", "conditions": [{"field": "status", "op": "eq", "value": "paid"}]}
BIG = {"port": "big", "conditions": [{"field": "amount", "op": "gte", "value": 99}]}


def test_ports_are_the_routes_then_otherwise() -> None:
    node = BranchNode({"routes": [PAID, BIG]})
    assert [p.name for p in node.output_ports()] == ["paid", "big", "else"]
    assert [p.name for p in BranchNode({"routes": [PAID], "otherwise": None}).output_ports()] == [
        "paid"
    ]
    assert BranchNode.describe()["dynamic_outputs"] is True


def test_first_mode_sends_a_record_to_its_first_matching_route() -> None:
    out = routed({"routes": [PAID, BIG]}, [ORDERS])
    assert [r["id"] for r in out["paid"]] == [1, 3]
    assert [r["id"] for r in out["big"]] == [2]  # 3 is big too, but went to paid first
    assert [r["id"] for r in out["else"]] == [4]


def test_all_mode_sends_a_record_to_every_matching_route() -> None:
    out = routed({"routes": [PAID, BIG], "mode": "all", "otherwise": "rest"}, [ORDERS])
    assert [r["id"] for r in out["paid"]] == [1, 3]
    assert [r["id"] for r in out["big"]] == [2, 3]
    assert [r["id"] for r in out["rest"]] == [4]


def test_otherwise_null_drops_the_records_no_route_takes() -> None:
    out = routed({"routes": [PAID], "otherwise": None}, [ORDERS])
    assert out == {"paid": [ORDERS[0], ORDERS[2]]}


def test_a_port_without_records_gets_no_batch() -> None:
    node = BranchNode({"routes": [PAID, BIG]})
    ports = {item.port for item in node.run(ExecutionContext(), {"in": iter([ORDERS[:1]])})}
    assert ports == {"paid"}


@pytest.mark.parametrize(
    ("config", "path", "message"),
    [
        ({"routes": []}, ("routes",), "at least 1"),
        ({"routes": [PAID, PAID]}, ("routes",), "named by routes[0] and routes[1]"),
        ({"routes": [PAID], "otherwise": "paid"}, ("otherwise",), "also a route's port"),
        ({"routes": [{**PAID, "port": "a/b"}]}, ("routes", 0, "port"), "pattern"),
        ({"routes": [{**PAID, "conditions": [{"field": "x", "op": "eqq", "value": 1}]}]},
         ("routes", 0, "conditions", 0, "op"), "eqq"),
        ({"routes": [PAID], "mode": "any"}, ("mode",), "first"),
    ],
)  # fmt: skip
def test_bad_configs_are_refused_naming_the_field(
    config: dict[str, Any], path: tuple[Any, ...], message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        BranchNode(config)
    error = caught.value.errors()[0]
    assert error["loc"] == path
    assert message in str(error["msg"]) or message in str(error.get("input"))


def test_every_port_carries_the_input_schema_and_conditions_are_checked() -> None:
    schema = RecordSchema({"id": FieldType.INTEGER, "status": FieldType.STRING})
    node = BranchNode({"routes": [PAID, BIG]})
    assert node.output_schemas({"in": schema}) == {"paid": schema, "big": schema, "else": schema}
    problems = node.check({"in": schema})
    assert [(p.path, p.message.split(" (")[0]) for p in problems] == [
        ("config.routes[1].conditions[0].field", "field 'amount' does not exist upstream")
    ]


# --- branch == filter, route by route, over several seeds -------------------------------------
STATUSES = ["paid", "refunded", "pending", None]


def random_orders(rng: random.Random, count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": i,
            "status": rng.choice(STATUSES),
            "amount": rng.choice([None, Decimal(rng.randint(0, 30000)) / 100, rng.randint(0, 300)]),
            "country": rng.choice(["ES", "FR", "DE", None]),
        }
        for i in range(count)
    ]


def random_route(rng: random.Random, port: str) -> dict[str, Any]:
    pool = [
        {"field": "status", "op": "eq", "value": rng.choice(["paid", "refunded"])},
        {"field": "amount", "op": rng.choice(["gt", "lte"]), "value": rng.randint(0, 300)},
        {"field": "country", "op": "in", "value": rng.sample(["ES", "FR", "DE"], 2)},
        {"field": "country", "op": "is_null"},
    ]
    conditions = rng.sample(pool, rng.randint(1, 3))
    return {"port": port, "conditions": conditions, "match": rng.choice(["all", "any"])}


def batches_of(records: list[dict[str, Any]], rng: random.Random) -> list[list[dict[str, Any]]]:
    cuts = sorted(rng.sample(range(1, len(records)), 5))
    return [records[a:b] for a, b in zip([0, *cuts], [*cuts, len(records)], strict=True)]


def kept_by_filter(route: dict[str, Any], records: list[dict[str, Any]]) -> list[Any]:
    config = {"conditions": route["conditions"], "match": route["match"]}
    out = FilterNode(config).run(ExecutionContext(), {"in": iter([records])})
    return [r["id"] for batch in out for r in batch]  # type: ignore[union-attr]


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_each_route_gives_what_filter_gives(seed: int) -> None:
    rng = random.Random(seed)
    records = random_orders(rng, 400)
    routes = [random_route(rng, f"r{i}") for i in range(3)]
    every = routed({"routes": routes, "mode": "all"}, batches_of(records, rng))
    first = routed({"routes": routes, "mode": "first"}, batches_of(records, rng))
    taken: set[Any] = set()
    for route in routes:
        expected = kept_by_filter(route, records)
        assert [r["id"] for r in every[route["port"]]] == expected
        # first: the records of this route that no earlier route took
        assert [r["id"] for r in first[route["port"]]] == [i for i in expected if i not in taken]
        taken |= set(expected)
    untaken = [r["id"] for r in records if r["id"] not in taken]
    assert [r["id"] for r in every["else"]] == untaken
    assert [r["id"] for r in first["else"]] == untaken


def test_branch_runs_per_partition_for_an_engine_that_keeps_ports() -> None:
    assert caps.is_partitionable(BranchNode)
    assert caps.partitionable_with(BranchNode, {"routes": [PAID]}, by_port=True)
    # an engine that keeps one output per partition cannot run it so
    assert not caps.partitionable_with(BranchNode, {"routes": [PAID]})
    assert caps.partitionable_with(FilterNode, {}) and caps.partitionable_with(
        FilterNode, {}, by_port=True
    )


def _ports_of(node: BranchNode, partition: int | None, batches: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {port.name: [] for port in node.output_ports()}
    for item in node.run(ExecutionContext(partition=partition), {"in": iter(batches)}):
        assert isinstance(item, PortBatch)
        out[item.port].extend(item.batch)
    return out


@pytest.mark.parametrize("seed", range(8))
def test_each_port_per_partition_in_order_equals_the_whole_input(seed: int) -> None:
    rng = random.Random(seed)
    records = [
        {"id": i, "status": rng.choice(["paid", "refunded", None]),
         "amount": rng.choice([None, Decimal(rng.randint(0, 20000)) / 100]),
         "country": rng.choice(["ES", "FR", None])}
        for i in range(rng.randint(0, 400))
    ]  # fmt: skip
    config = {
        "routes": [PAID, BIG, {"port": "es", "conditions": [
            {"field": "country", "op": "eq", "value": "ES"}]}],
        "mode": rng.choice(["first", "all"]),
        "otherwise": rng.choice(["else", None]),
    }  # fmt: skip
    node = BranchNode(config)
    whole = _ports_of(node, None, [records])
    cuts = sorted(rng.choice(range(len(records) + 1)) for _ in range(rng.randint(0, 6)))
    parts = [records[a:b] for a, b in zip([0, *cuts], [*cuts, len(records)], strict=True)]
    per_port: dict[str, list[Any]] = {port: [] for port in whole}
    for index, part in enumerate(parts):
        batches = [RowBatch(list(part[0]), [tuple(r.values()) for r in part])] if part else []
        for port, got in _ports_of(node, index, batches).items():
            per_port[port].extend(got)  # partition after partition
    assert per_port == whole
