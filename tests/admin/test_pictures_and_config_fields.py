"""The graph picture and the config fields generated from JSON Schema."""

from __future__ import annotations

import re

from flows.config_forms import OMIT, properties, to_config_value, to_initial
from flows.graph import Edge
from flows.graph_svg import NodeBox, render_graph
from nodes.builtin.filter import FilterConfig
from nodes.builtin.http_post import HttpPostConfig


def box_x(svg: str, key: str) -> int:
    match = re.search(rf'data-node="{key}"[^>]*><title>[^<]*</title><rect x="(\d+)"', svg)
    assert match, key
    return int(match[1])


def test_nodes_are_laid_out_by_level() -> None:
    nodes = [NodeBox(k, "t") for k in ("a", "b", "c", "d")]
    edges = [
        Edge("a", "", "b", ""),
        Edge("a", "", "c", ""),
        Edge("b", "", "d", ""),
        Edge("c", "", "d", ""),
    ]
    svg = render_graph(nodes, edges)
    assert box_x(svg, "a") < box_x(svg, "b") == box_x(svg, "c") < box_x(svg, "d")
    assert svg.count('class="flow-edge"') == 4


def test_text_is_escaped_and_a_cycle_still_draws() -> None:
    nodes = [NodeBox("x", "<script>"), NodeBox("y", "t")]
    svg = render_graph(
        nodes, [Edge("x", "", "y", ""), Edge("y", "", "x", ""), Edge("x", "", "gone", "")]
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert svg.count('class="flow-edge"') == 2  # the edge to an unknown node is left out


def test_a_run_picture_labels_status_and_rows() -> None:
    svg = render_graph([NodeBox("a", "SQL query", "failed", 0, 1200)], [])
    assert 'data-status="failed"' in svg and "in 0 · out 1,200" in svg


def test_schema_properties_become_typed_fields() -> None:
    kinds = {p.name: p.kind for p in properties(HttpPostConfig.model_json_schema())}
    assert kinds["url"] == "text" and kinds["connection"] == "text"  # str | None
    assert kinds["batch_size"] == "integer" and kinds["timeout_s"] == "number"
    assert kinds["headers"] == "json"
    filter_props = {p.name: p for p in properties(FilterConfig.model_json_schema())}
    assert filter_props["match"].kind == "choice" and filter_props["match"].choices == (
        "all",
        "any",
    )
    assert filter_props["conditions"].required and filter_props["conditions"].kind == "json"


def test_field_values_convert_to_config_values() -> None:
    props = {p.name: p for p in properties(HttpPostConfig.model_json_schema())}
    assert to_config_value(props["batch_size"], " 25 ") == 25
    assert to_config_value(props["timeout_s"], "2.5") == 2.5
    assert to_config_value(props["batch_size"], "lots") == "lots"  # for the model to reject
    assert to_config_value(props["url"], "") is OMIT
    assert to_initial(props["headers"], {"headers": {"X-A": "1"}}) == '{"X-A": "1"}'
    assert to_initial(props["batch_size"], {}) is None
