"""Auto-layout of the canvas: left to right by level, boxes that never overlap."""

from __future__ import annotations

import random
from itertools import combinations
from typing import Any

import pytest

from flows.layout import NODE_BOX, auto_layout, levels, node_height, with_positions


def one_port(node_type: str, config: Any = None) -> tuple[int, int]:
    return (0, 1) if node_type == "source" else (1, 1)


def boxes(nodes: list[dict[str, Any]], positions: dict[str, dict[str, float]]) -> list[tuple]:
    out = []
    for node in nodes:
        x, y = positions[node["key"]]["x"], positions[node["key"]]["y"]
        height = node_height(*one_port(node["type"]))
        out.append((x, y, x + NODE_BOX["width"], y + height))
    return out


def overlaps(a: tuple, b: tuple) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_levels_are_the_longest_path_from_a_root() -> None:
    keys = ["a", "b", "c", "d"]
    edges = [("a", "b"), ("b", "c"), ("a", "c"), ("c", "d")]
    assert levels(keys, edges) == {"a": 0, "b": 1, "c": 2, "d": 3}


def test_a_cycle_or_an_unknown_node_does_not_hang_or_fail() -> None:
    found = levels(["a", "b"], [("a", "b"), ("b", "a"), ("a", "zzz")])
    assert set(found) == {"a", "b"}
    assert all(0 <= level <= 4 for level in found.values())  # one pass per node, then stop


def test_a_chain_runs_left_to_right_on_one_row() -> None:
    nodes = [{"key": k, "type": "t"} for k in "abc"]
    edges = [{"from": "a", "to": "b"}, {"from": "b", "to": "c"}]
    spots = auto_layout(nodes, edges, one_port)
    assert spots["a"]["x"] < spots["b"]["x"] < spots["c"]["x"]
    assert spots["a"]["y"] == spots["b"]["y"] == spots["c"]["y"]
    assert spots["b"]["x"] - spots["a"]["x"] == NODE_BOX["width"] + NODE_BOX["gap_x"]


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6, 7, 8])
def test_random_graphs_lay_out_without_overlaps_and_edges_point_right(seed: int) -> None:
    rng = random.Random(seed)
    count = rng.randint(2, 40)
    nodes = [
        {"key": f"n{i}", "type": "source" if i < 3 or rng.random() < 0.1 else "t"}
        for i in range(count)
    ]
    edges = [
        {"from": f"n{rng.randrange(j)}", "to": f"n{j}"}
        for j in range(1, count)
        for _ in range(rng.randint(0, 2))
        if nodes[j]["type"] != "source"
    ]
    spots = auto_layout(nodes, edges, one_port)
    assert set(spots) == {n["key"] for n in nodes}
    placed = boxes(nodes, spots)
    assert not [(a, b) for a, b in combinations(placed, 2) if overlaps(a, b)]
    for edge in edges:
        assert spots[edge["from"]]["x"] < spots[edge["to"]]["x"]


def test_nodes_with_a_position_keep_it_and_new_ones_go_below() -> None:
    data = {
        "nodes": [
            {"key": "kept", "type": "filter", "ui": {"x": 500, "y": 20}},
            {"key": "new", "type": "filter"},
        ],
        "edges": [],
    }
    laid = with_positions(data)
    assert laid["nodes"][0]["ui"] == {"x": 500, "y": 20}
    assert laid["nodes"][1]["ui"]["y"] >= 20 + node_height(1, 1)
    assert "ui" not in data["nodes"][1]  # the input is not changed


def test_a_flow_with_every_position_is_returned_as_it_is() -> None:
    data = {"nodes": [{"key": "a", "type": "filter", "ui": {"x": 1, "y": 2}}], "edges": []}
    assert with_positions(data) is data


def test_a_branch_is_as_tall_as_the_ports_of_its_config() -> None:
    from flows.layout import catalog_ports

    route = {"conditions": [{"field": "s", "op": "eq", "value": 1}]}
    config = {"routes": [{**route, "port": p} for p in ("a", "b", "c")]}
    assert catalog_ports("branch", config) == (1, 4)  # three routes and "else"
    assert catalog_ports("branch", {"routes": []}) == (1, 1)  # invalid: one row
    assert catalog_ports("join") == (2, 1)
