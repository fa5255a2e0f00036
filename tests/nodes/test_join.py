"""The ``join`` node: against a nested-loop reference over several seeds, the bound on the right
side, collisions, select, save-time checks."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from nodes.builtin.join import JoinNode
from nodes.sdk import ExecutionContext, FieldType, NodeError, RecordSchema

Records = list[dict[str, Any]]


def joined(config: dict[str, Any], left: list[Records], right: list[Records]) -> Records:
    out = JoinNode(config).run(ExecutionContext(), {"left": iter(left), "right": iter(right)})
    return [record for batch in out for record in batch]  # type: ignore[union-attr]


def reference(config: dict[str, Any], left: Records, right: Records) -> Records:
    """What the join must give, by a nested loop over both sides (no hash table)."""
    pairs = config["on"]
    prefix = config.get("right_prefix", "right_")
    how = config.get("how", "inner")
    names: list[str] = []
    for record in right:
        names += [name for name in record if name not in names]

    def key(record: dict[str, Any], side: str) -> tuple[Any, ...]:
        return tuple(record.get(pair[side]) for pair in pairs)

    out = []
    for a in left:
        ka = key(a, "left")
        found = [b for b in right if None not in ka and key(b, "right") == ka]
        if how == "semi":
            out += [a] if found else []
        elif how == "anti":
            out += [] if found else [a]
        else:
            if not found and how == "left":
                found = [{}]
            for b in found:
                merged = dict(a)
                for name in names:
                    merged[prefix + name if name in a else name] = b.get(name)
                out.append(merged)
    select = config.get("select")
    return out if select is None else [{n: r.get(n) for n in select} for r in out]


def cut(records: Records, rng: random.Random) -> list[Records]:
    if len(records) < 2:
        return [records]
    cuts = sorted(rng.sample(range(1, len(records)), min(4, len(records) - 1)))
    return [records[a:b] for a, b in zip([0, *cuts], [*cuts, len(records)], strict=True)]


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("how", ["inner", "left", "semi", "anti"])
def test_join_gives_what_a_nested_loop_gives(seed: int, how: str) -> None:
    rng = random.Random(seed)
    keys: list[Any] = [1, 2, 3, 4, 5, None, Decimal("2"), 2.0, "2"]
    left = [
        {"id": i, "customer_id": rng.choice(keys), "region": rng.choice(["eu", "us", None]),
         "amount": Decimal(rng.randint(0, 9999)) / 100}
        for i in range(rng.randint(0, 120))
    ]  # fmt: skip
    right = [
        {"id": rng.choice(keys), "region": rng.choice(["eu", "us"]), "name": f"c{i}"}
        for i in range(rng.randint(0, 40))
    ]
    for record in rng.sample(right, len(right) // 4):
        record["vip"] = rng.choice([True, False])  # a field only some right records have
    config: dict[str, Any] = {"on": [{"left": "customer_id", "right": "id"}], "how": how}
    if seed % 2:
        config["on"].append({"left": "region", "right": "region"})
    if seed % 3 == 0 and how in ("inner", "left"):
        config["select"] = ["id", "name", "right_id"]
        config["right_prefix"] = "right_"
    assert joined(config, cut(left, rng), cut(right, rng)) == reference(config, left, right)


def test_matches_on_equal_values_of_different_number_types_not_on_text() -> None:
    config = {"on": [{"left": "k", "right": "k"}]}
    right = [[{"k": 1, "name": "int"}, {"k": "1", "name": "text"}]]
    out = joined(config, [[{"k": Decimal("1.0")}, {"k": 1.0}, {"k": None}]], right)
    assert [r["name"] for r in out] == ["int", "int"]


def test_collisions_are_prefixed_and_values_keep_their_types() -> None:
    at = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    config = {"on": [{"left": "customer_id", "right": "id"}], "right_prefix": "c_"}
    out = joined(
        config,
        [[{"id": 10, "customer_id": 7, "amount": Decimal("1.10")}]],
        [[{"id": 7, "amount": Decimal("3.00"), "since": at, "day": at.date()}]],
    )
    assert out == [
        {"id": 10, "customer_id": 7, "amount": Decimal("1.10"), "c_id": 7,
         "c_amount": Decimal("3.00"), "since": at, "day": at.date()}
    ]  # fmt: skip


def test_a_right_side_past_its_bound_fails_naming_the_bound() -> None:
    config = {"on": [{"left": "id", "right": "id"}], "right_max_rows": 1000}
    right = [[{"id": i} for i in range(600)], [{"id": i} for i in range(600)]]
    with pytest.raises(NodeError) as caught:
        joined(config, [[{"id": 1}]], right)
    assert caught.value.permanent
    assert "more than 1,000 records (right_max_rows = 1,000)" in str(caught.value)


def test_output_batches_stay_bounded_when_a_key_matches_many() -> None:
    node = JoinNode({"on": [{"left": "k", "right": "k"}]})
    left = iter([[{"k": 1, "i": i} for i in range(50)]])
    right = iter([[{"k": 1, "j": j} for j in range(100)]])
    sizes = [len(b) for b in node.run(ExecutionContext(), {"left": left, "right": right})]
    assert sum(sizes) == 5000 and max(sizes) <= 1000


LEFT = RecordSchema({"id": FieldType.INTEGER, "customer_id": FieldType.INTEGER})
RIGHT = RecordSchema({"id": FieldType.INTEGER, "country": FieldType.STRING})


def test_output_schema_is_left_and_prefixed_right() -> None:
    node = JoinNode({"on": [{"left": "customer_id", "right": "id"}]})
    schema = node.output_schema({"left": LEFT, "right": RIGHT})
    assert schema.as_dict() == {
        "id": "integer", "customer_id": "integer", "right_id": "integer", "country": "string"
    }  # fmt: skip
    semi = JoinNode({"on": [{"left": "customer_id", "right": "id"}], "how": "semi"})
    assert semi.output_schema({"left": LEFT, "right": RIGHT}) == LEFT
    unknown = node.output_schema({"left": LEFT, "right": RecordSchema.unknown()})
    assert not unknown.known


def test_check_names_a_missing_field_on_its_side_and_a_bad_select() -> None:
    node = JoinNode(
        {"on": [{"left": "customer_id", "right": "customer_id"}], "select": ["id", "nope"]}
    )
    problems = {p.path: p.message for p in node.check({"left": LEFT, "right": RIGHT})}
    assert problems == {
        "config.on[0].right": "field 'customer_id' does not exist on the right input "
        "(known fields: id, country)",
        "config.select[1]": "field 'nope' is not in the join's output "
        "(fields: id, customer_id, right_id, country)",
    }


def test_check_refuses_keys_that_never_compare_equal() -> None:
    node = JoinNode({"on": [{"left": "customer_id", "right": "country"}]})
    (problem,) = node.check({"left": LEFT, "right": RIGHT})
    assert problem.path == "config.on[0]"
    assert "never compare equal" in problem.message


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        JoinNode({"on": [], "how": "outer"})
    assert {e["loc"] for e in caught.value.errors()} == {("on",), ("how",)}


LEFT_KEYS: list[Any] = [
    1, 2, 3, 7, 2.0, 2.5, Decimal("3"), Decimal("3.1"), "2", True, None, 2**70,
    float("nan"), float("inf"), Decimal("NaN"), [2],
]  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize("how", ["inner", "left", "semi", "anti"])
def test_integer_keys_in_sorted_arrays_match_as_a_nested_loop(seed: int, how: str) -> None:
    """Right keys all integers (shuffled, repeated, negative): the sorted-array index; left
    keys of every kind; then a text key arriving late on the right turns it into a dict."""
    rng = random.Random(seed)
    right = [{"id": rng.randint(-3, 8), "n": i} for i in range(rng.randint(0, 60))]
    left = [{"k": rng.choice(LEFT_KEYS), "i": i} for i in range(80)]
    config: dict[str, Any] = {"on": [{"left": "k", "right": "id"}], "how": how}
    expected = reference(config, left, right)
    assert joined(config, cut(left, rng), cut(right, rng)) == expected
    mixed = [*right, {"id": "2", "n": -1}, {"id": 5, "n": -2}]
    expected = reference(config, left, mixed)
    assert joined(config, cut(left, rng), cut(mixed, rng)) == expected


def test_a_million_integer_keys_stay_small() -> None:
    import tracemalloc

    from nodes.builtin.join_table import RightTable
    from nodes.builtin.keys import value_reader

    def customers() -> Iterator[list[dict[str, Any]]]:
        for start in range(0, 200_000, 1000):
            yield [
                {"id": i, "name": f"customer {i}", "country": "ES"}
                for i in range(start, start + 1000)
            ]

    tracemalloc.start()
    table = RightTable(value_reader("id"), 1_000_000, composite=False).load(customers())
    held, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert table.matches(123_456) == [[123_456, "customer 123456", "ES"]]
    assert held / 200_000 < 80  # bytes per record (a dict of tuples: about 450)
