"""The ``payload`` source node and ``%(payload.x)s`` values: pure logic, no services."""

from __future__ import annotations

from typing import Any

import pytest

from nodes.builtin.payload import PayloadNode
from nodes.builtin.sql_backends import _sqlite_query, placeholders
from nodes.sdk import ExecutionContext, NodeError


def records(config: dict[str, Any], payload: Any) -> list[dict[str, Any]]:
    node = PayloadNode(config)
    return [r for batch in node.execute(ExecutionContext(payload=payload), {}) for r in batch]


def test_records_at_a_path_come_out_in_batches() -> None:
    payload = {"data": {"orders": [{"id": i} for i in range(5)]}}
    node = PayloadNode({"records_path": "data.orders", "batch_size": 2})

    batches = list(node.execute(ExecutionContext(payload=payload), {}))

    assert [len(b) for b in batches] == [2, 2, 1]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"id": 1}, [{"id": 1}]),
        ([{"id": 1}, {"id": 2}], [{"id": 1}, {"id": 2}]),
        (None, []),
    ],
)
def test_without_a_path_the_whole_payload_is_the_records(payload: Any, expected: Any) -> None:
    assert records({}, payload) == expected


def test_a_missing_path_gives_no_records() -> None:
    assert records({"records_path": "orders"}, {"other": []}) == []


def test_a_value_that_is_not_an_object_fails_naming_it() -> None:
    with pytest.raises(NodeError, match=r"orders\[1\] is a int, not an object"):
        records({"records_path": "orders"}, {"orders": [{"id": 1}, 7]})


def test_a_payload_value_binds_only_scalars() -> None:
    context = ExecutionContext(payload={"order": {"id": 7, "tags": ["a"]}})

    assert context.payload_value("order.id") == 7
    with pytest.raises(NodeError, match=r"payload\.order\.tags is a list"):
        context.payload_value("order.tags")
    with pytest.raises(NodeError, match=r"no value at 'order\.nope'"):
        context.payload_value("order.nope")


def test_dotted_placeholders_are_found_and_renamed_for_sqlite() -> None:
    query = "select %(payload.order.id)s, %(interval_start)s, 5 %% 2"

    assert placeholders(query) == ["payload.order.id", "interval_start"]
    assert _sqlite_query(query) == "select :payload__order__id, :interval_start, 5 % 2"
