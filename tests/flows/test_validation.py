"""Static validation: every mistake is found before anything runs, named by path and node."""

from __future__ import annotations

from typing import Any

import pytest

from flows.validation import validate_flow


def problems(data: dict[str, Any]) -> list[str]:
    return [str(p) for p in validate_flow(data)]


def only_problem(data: dict[str, Any]) -> str:
    found = problems(data)
    assert len(found) == 1, found
    return found[0]


def test_the_minimal_flow_is_valid(minimal_flow: dict[str, Any]) -> None:
    assert problems(minimal_flow) == []


def test_a_flow_file_must_be_an_object() -> None:
    assert [str(p) for p in validate_flow([1, 2])] == ["a flow file must be a JSON object"]


def test_missing_top_level_fields_are_named() -> None:
    found = problems({"nodes": []})
    assert any(p.startswith("slug:") for p in found)
    assert any(p.startswith("name:") for p in found)


def test_unknown_top_level_field_is_refused(minimal_flow: dict[str, Any]) -> None:
    minimal_flow["nodez"] = []
    assert only_problem(minimal_flow).startswith("nodez: Extra inputs are not permitted")


def test_unknown_node_type_names_the_node(minimal_flow: dict[str, Any]) -> None:
    minimal_flow["nodes"][1]["type"] = "filtr"
    message = only_problem(minimal_flow)
    assert message.startswith("nodes[1].type (node 'paid'): unknown node type 'filtr'")
    assert "filter" in message


def test_config_error_has_the_field_path(minimal_flow: dict[str, Any]) -> None:
    minimal_flow["nodes"][1]["config"]["conditions"][0]["op"] = "eqq"
    message = only_problem(minimal_flow)
    assert message.startswith("nodes[1].config.conditions[0].op (node 'paid'):")


def test_missing_required_config_is_named(minimal_flow: dict[str, Any]) -> None:
    del minimal_flow["nodes"][0]["config"]["query"]
    assert only_problem(minimal_flow).startswith(
        "nodes[0].config.query (node 'orders'): Field required"
    )


def test_duplicate_keys_are_refused(minimal_flow: dict[str, Any]) -> None:
    minimal_flow["nodes"][2]["key"] = "paid"
    found = problems(minimal_flow)
    assert "nodes[2].key (node 'paid'): duplicate key 'paid' (also nodes[1])" in found


def test_edge_to_unknown_node(minimal_flow: dict[str, Any]) -> None:
    minimal_flow["edges"][1]["to"] = "ghost"
    assert only_problem(minimal_flow) == "edges[1].to: unknown node 'ghost'"


def test_a_source_cannot_be_a_target(minimal_flow: dict[str, Any]) -> None:
    minimal_flow["edges"].append({"from": "paid", "to": "orders"})
    message = only_problem(minimal_flow)
    assert (
        message
        == "edges[3].to (node 'orders'): node 'orders' is a source (sql_query) and takes no input"
    )


def test_unknown_port_is_named(minimal_flow: dict[str, Any]) -> None:
    minimal_flow["edges"][0]["to_port"] = "left"
    assert only_problem(minimal_flow) == (
        "edges[0].to_port (node 'paid'): node 'paid' has no port 'left' (ports: in)"
    )


def test_port_kind_mismatch_is_refused(minimal_flow: dict[str, Any]) -> None:
    minimal_flow["nodes"].append({"key": "audit", "type": "dummy_audit", "config": {}})
    minimal_flow["edges"].append({"from": "shape", "to": "audit"})
    assert only_problem(minimal_flow) == (
        "edges[3] (node 'audit'): port kinds do not fit: shape.out (records) -> audit.summaries (summary)"
    )


def test_a_summary_may_feed_a_summary_input(minimal_flow: dict[str, Any]) -> None:
    minimal_flow["nodes"].append({"key": "audit", "type": "dummy_audit", "config": {}})
    minimal_flow["edges"].append({"from": "push", "to": "audit"})
    assert problems(minimal_flow) == []


def test_cycles_are_named_in_order(minimal_flow: dict[str, Any]) -> None:
    minimal_flow["edges"].append({"from": "shape", "to": "paid"})
    message = only_problem(minimal_flow)
    assert message == "edges: the graph has a cycle: paid -> shape -> paid"


def test_missing_required_input(minimal_flow: dict[str, Any]) -> None:
    minimal_flow["edges"] = minimal_flow["edges"][:2]
    assert only_problem(minimal_flow) == (
        "nodes[3].inputs.in (node 'push'): required input 'in' is not connected"
    )


def test_field_missing_upstream_is_found_when_the_schema_is_known(
    minimal_flow: dict[str, Any],
) -> None:
    minimal_flow["nodes"][0]["config"]["columns"] = {
        "id": "integer",
        "customer": "string",
        "email": "string",
        "status": "string",
        "created_at": "datetime",
    }
    found = problems(minimal_flow)
    assert found[0].startswith("nodes[1].config.conditions[1].field (node 'paid'):")
    assert "field 'amount' does not exist upstream" in found[0]
    assert found[1].startswith("nodes[2].config.mapping.total.source (node 'shape'):")


def test_field_checks_follow_mapped_names(minimal_flow: dict[str, Any]) -> None:
    minimal_flow["nodes"].insert(
        3,
        {
            "key": "big",
            "type": "filter",
            "config": {"conditions": [{"field": "amount", "op": "gt", "value": 100}]},
        },
    )
    minimal_flow["edges"][2:] = [{"from": "shape", "to": "big"}, {"from": "big", "to": "push"}]
    message = only_problem(minimal_flow)
    # map_fields renamed amount to total: the field no longer exists after it.
    assert message.startswith("nodes[3].config.conditions[0].field (node 'big'):")


@pytest.mark.parametrize("bad_key", ["has space", "", "x" * 101])
def test_node_keys_are_slugs(minimal_flow: dict[str, Any], bad_key: str) -> None:
    minimal_flow["nodes"][0]["key"] = bad_key
    assert any(p.startswith("nodes[0].key") for p in problems(minimal_flow))


def test_config_problems_do_not_hide_the_graphs(minimal_flow: dict[str, Any]) -> None:
    """One pass: a node with a bad config still has its edges checked and its cycles found."""
    minimal_flow["nodes"][1]["config"]["match"] = "most"  # paid
    minimal_flow["nodes"][2]["config"]["mapping"] = 5  # shape
    minimal_flow["edges"].append({"from": "shape", "to": "paid"})  # a cycle through both
    minimal_flow["edges"].append({"from": "paid", "to": "orders"})  # into a source
    assert problems(minimal_flow) == [
        "nodes[1].config.match (node 'paid'): 'most' is not one of all, any",
        "nodes[2].config.mapping (node 'shape'): Input should be a valid dictionary",
        "edges[4].to (node 'orders'): node 'orders' is a source (sql_query) and takes no input",
        "edges: the graph has a cycle: paid -> shape -> paid",
    ]


@pytest.mark.parametrize(
    ("node", "field", "value", "message"),
    [
        (1, ["conditions", 0, "op"], "eqq", "'eqq' is not one of eq, ne, gt, gte, lt, lte, in"),
        (1, ["match"], 3, "3 is not one of all, any"),
        (2, ["mapping", "total", "cast"], "floaty", "'floaty' is not one of "),
        (1, ["match"], "x" * 300, "'" + "x" * 96 + "... is not one of all, any"),
    ],
)
def test_a_value_outside_the_choices_is_quoted(
    minimal_flow: dict[str, Any], node: int, field: list[Any], value: Any, message: str
) -> None:
    target = minimal_flow["nodes"][node]["config"]
    for step in field[:-1]:
        target = target[step]
    target[field[-1]] = value
    found = only_problem(minimal_flow)
    assert message in found, found
