"""The DAG helpers: order, levels, cycles."""

import pytest

from flows.graph import CycleError, Edge, Graph


def graph(keys: str, edges: str) -> Graph:
    pairs = [e.split(">") for e in edges.split()] if edges else []
    return Graph(list(keys), [Edge(a, "out", b, "in") for a, b in pairs])


def test_levels_of_a_diamond() -> None:
    assert graph("abcd", "a>b a>c b>d c>d").levels() == [["a"], ["b", "c"], ["d"]]


def test_levels_follow_the_deepest_parent() -> None:
    assert graph("abc", "a>b b>c a>c").levels() == [["a"], ["b"], ["c"]]


def test_topological_order_keeps_file_order_among_equals() -> None:
    assert graph("cab", "").topological_order() == ["c", "a", "b"]


def test_cycle_is_reported_in_edge_direction() -> None:
    with pytest.raises(CycleError) as caught:
        graph("abc", "a>b b>c c>a").topological_order()
    assert caught.value.nodes == ["a", "b", "c", "a"]


def test_descendants() -> None:
    assert graph("abcd", "a>b b>c a>d").descendants("b") == {"c"}
