"""The preview runner on hand-made plans: a sink without a preview hook is never executed."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from flows import preview
from nodes.sdk import ExecutionContext, Node, RecordSchema
from nodes.sdk.node import AnyBatch, RecordStream


class Numbers(Node):
    type = "t_numbers"
    category = "source"
    inputs = ()

    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, RecordStream]
    ) -> Iterator[AnyBatch]:
        for start in range(0, 10_000, 100):  # ignores sample_limit: the runner stops anyway
            yield [{"n": n} for n in range(start, start + 100)]


class Launcher(Node):
    """A destination that would act on the world and has no preview hook."""

    type = "t_launcher"
    category = "destination"
    fired: list[int] = []

    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, RecordStream]
    ) -> Iterator[AnyBatch]:
        for batch in inputs["in"]:
            self.fired.extend(r["n"] for r in batch)
            yield batch


def plan() -> preview.Plan:
    nodes: dict[str, Node] = {"nums": Numbers({}), "launch": Launcher({})}
    return preview.Plan(
        "launch",
        ["nums", "launch"],
        nodes,
        {},
        {"nums": {}, "launch": {"in": [("nums", "out")]}},
        {"nums": {"out": RecordSchema.unknown()}, "launch": {"out": RecordSchema.unknown()}},
    )


def test_a_sink_without_a_preview_hook_is_skipped_and_says_so() -> None:
    answer = preview.run(plan(), limit=7, timeout_s=10, max_bytes=10_000)
    nums, launch = answer["nodes"]
    assert nums["status"] == "ok" and [r["n"] for r in nums["records"]] == list(range(7))
    assert nums["limit_reached"] and nums["sample_schema"] == {"n": "integer"}
    assert launch["status"] == "skipped"
    assert "not executed" in launch["message"] and "t_launcher" in launch["message"]
    assert Launcher.fired == []


def test_sample_schema_merges_types() -> None:
    records = [{"a": 1, "b": None}, {"a": "x", "b": None}, {"a": 2, "c": 1.5}]
    assert preview.sample_schema(records) == {"a": "any", "b": "null", "c": "float"}


def test_a_branch_preview_groups_records_by_port_and_feeds_each_port_on() -> None:
    from nodes.builtin.branch import BranchNode
    from nodes.builtin.filter import FilterNode

    even = {"port": "even", "conditions": [{"field": "n", "op": "in", "value": [0, 2, 4, 6]}]}
    nodes: dict[str, Node] = {
        "nums": Numbers({}),
        "split": BranchNode({"routes": [even], "otherwise": "odd"}),
        "small": FilterNode({"conditions": [{"field": "n", "op": "lt", "value": 5}]}),
    }
    unknown = RecordSchema.unknown()
    plan = preview.Plan(
        "small",
        ["nums", "split", "small"],
        nodes,
        {},
        {"nums": {}, "split": {"in": [("nums", "out")]}, "small": {"in": [("split", "odd")]}},
        {"nums": {"out": unknown}, "split": {"even": unknown, "odd": unknown},
         "small": {"out": unknown}},
    )  # fmt: skip
    _nums, split, small = preview.run(plan, limit=8, timeout_s=10, max_bytes=10_000)["nodes"]
    assert split["ports"] == {"even": 4, "odd": 4}
    assert [r["n"] for r in split["records"]] == [0, 2, 4, 6, 1, 3, 5, 7]
    assert small["inputs"] == {"in": ["split.odd"]}
    assert [r["n"] for r in small["records"]] == [1, 3]
