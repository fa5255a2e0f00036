"""Save-time checks of flows that fork and merge: a branch's ports come from its config, a join's
fields must exist on their side, an aggregate's functions must fit their field's type; every
problem names its path and node. Also: every example flow file validates."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from flows.validation import port_schemas, validate_flow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = json.loads((ROOT / "examples" / "orders-by-country.json").read_text())


@pytest.fixture
def flow() -> dict[str, Any]:
    return copy.deepcopy(EXAMPLE)


def problems(data: dict[str, Any]) -> list[str]:
    return [str(p) for p in validate_flow(data)]


def node(data: dict[str, Any], key: str) -> dict[str, Any]:
    found: dict[str, Any] = next(n for n in data["nodes"] if n["key"] == key)
    return found


def edge_index(data: dict[str, Any], source: str, target: str) -> int:
    return next(i for i, e in enumerate(data["edges"]) if e["from"] == source and e["to"] == target)


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.json")), ids=lambda p: p.name)
def test_every_example_flow_file_is_valid(path: Path) -> None:
    assert problems(json.loads(path.read_text())) == []


def test_an_edge_from_a_branch_port_that_does_not_exist_names_the_ports(
    flow: dict[str, Any],
) -> None:
    index = edge_index(flow, "by_country", "rest_daily")
    flow["edges"][index]["from_port"] = "france"
    assert problems(flow) == [
        f"edges[{index}].from_port (node 'by_country'): node 'by_country' has no port 'france' "
        "(ports: spain, rest)"
    ]


def test_an_edge_from_a_branch_must_name_its_port(flow: dict[str, Any]) -> None:
    index = edge_index(flow, "by_country", "spain_daily")
    del flow["edges"][index]["from_port"]
    assert problems(flow) == [
        f"edges[{index}].from_port (node 'by_country'): node 'by_country' sends records to the "
        "ports of its config (spain, rest): name one in from_port"
    ]


def test_a_route_removed_from_the_config_makes_its_edge_a_problem(flow: dict[str, Any]) -> None:
    node(flow, "by_country")["config"]["otherwise"] = None
    index = edge_index(flow, "by_country", "rest_daily")
    assert problems(flow) == [
        f"edges[{index}].from_port (node 'by_country'): node 'by_country' has no port 'rest' "
        "(ports: spain)"
    ]


def test_a_join_field_missing_on_the_right_is_named(flow: dict[str, Any]) -> None:
    node(flow, "with_customer")["config"]["on"] = [{"left": "customer_id", "right": "customer"}]
    assert problems(flow) == [
        "nodes[3].config.on[0].right (node 'with_customer'): field 'customer' does not exist on "
        "the right input (known fields: id, country)"
    ]


def test_the_join_output_is_checked_downstream(flow: dict[str, Any]) -> None:
    # Without select the right id collides with the left's and becomes right_id; a later
    # node naming a field the join does not give is refused.
    del node(flow, "with_customer")["config"]["select"]
    route = node(flow, "by_country")["config"]["routes"][0]
    route["conditions"] = [{"field": "right_country", "op": "eq", "value": "ES"}]
    (problem,) = problems(flow)
    assert problem.startswith(
        "nodes[4].config.routes[0].conditions[0].field (node 'by_country'): field "
        "'right_country' does not exist upstream (known fields: id, customer_id, amount, "
        "created_at, right_id, country)"
    )


def test_an_aggregate_sum_of_a_text_field_is_refused(flow: dict[str, Any]) -> None:
    node(flow, "rest_daily")["config"]["aggregations"][0]["field"] = "country"
    assert problems(flow) == [
        "nodes[6].config.aggregations[0].field (node 'rest_daily'): cannot sum 'country', a "
        "string field (sum needs integer, float or decimal values)"
    ]


def test_a_join_needs_both_inputs(flow: dict[str, Any]) -> None:
    flow["edges"] = [e for e in flow["edges"] if e["from"] != "customers"]
    assert problems(flow) == [
        "nodes[3].inputs.right (node 'with_customer'): required input 'right' is not connected"
    ]


def test_an_edge_into_a_join_must_name_its_input(flow: dict[str, Any]) -> None:
    index = edge_index(flow, "customers", "with_customer")
    del flow["edges"][index]["to_port"]
    assert (
        f"edges[{index}].to_port (node 'with_customer'): node 'with_customer' has several "
        in (problems(flow)[0])
    )


def test_an_invalid_branch_config_is_reported_once_not_per_edge(flow: dict[str, Any]) -> None:
    node(flow, "by_country")["config"]["routes"] = []
    assert problems(flow) == [
        "nodes[4].config.routes (node 'by_country'): List should have at least 1 item after "
        "validation, not 0"
    ]


def test_port_schemas_give_each_branch_port_and_the_ports(flow: dict[str, Any]) -> None:
    schemas = port_schemas(flow)
    joined = {"id": "integer", "amount": "decimal", "created_at": "datetime", "country": "string"}
    assert schemas["by_country"]["outputs"] == {"spain": joined, "rest": joined}
    assert [p["name"] for p in schemas["by_country"]["ports"]] == ["spain", "rest"]
    assert schemas["spain_daily"]["inputs"] == {"in": joined}
    assert schemas["rest_daily"]["output"] == {
        "country": "string", "day": "datetime", "revenue": "decimal", "orders": "integer"
    }  # fmt: skip
