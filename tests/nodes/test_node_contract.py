"""The node contract is small: ``Node`` is ports, a typed config and ``execute``; what a node may
do for speed is an optional capability (``nodes.sdk.capabilities``), read by the engine through
the capability functions, whether declared with a mixin or, as before, by class attribute."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from nodes.builtin.filter import FilterConfig, FilterNode
from nodes.registry import registry
from nodes.sdk import (
    AcceptsRows,
    AnyBatch,
    Batch,
    ExecutionContext,
    Node,
    NodeConfig,
    Partitionable,
    Pure,
    RecordStream,
    RowBatch,
    SlicedSource,
)
from nodes.sdk import capabilities as caps

ROOT = Path(__file__).resolve().parents[2]

#: What each built-in type can do, as the engine sees it: partitionable (default config),
#: pure, accepts rows, plans slices, partitions by default (default config).
BUILTIN_CAPABILITIES = {
    "filter": (True, True, True, False, False),
    "map_fields": (True, True, True, False, False),
    "http_post": (True, False, True, False, False),
    "sql_write": (True, False, True, False, False),
    "sql_query": (False, False, False, True, True),  # automatic partitioning (decision 0030)
    "file_read": (False, False, False, True, True),
    "file_write": (False, False, False, False, False),
    "http_request": (False, False, False, False, False),
    "payload": (False, False, False, False, False),
    # Whole-input nodes (decision 0036); branch runs per partition only where each partition's
    # output is kept per port, aggregate as partials and one combine (decision 0037).
    "branch": (False, False, False, False, False),
    "join": (False, False, False, False, False),
    "aggregate": (False, False, False, False, False),
    "dedupe": (False, False, False, False, False),
}

#: Partitionable for an engine that keeps each partition's output per port (``by_port``).
BY_PORT = {"filter", "map_fields", "http_post", "sql_write", "branch"}
#: Run as one partial state per partition and one combine.
COMBINABLE = {"aggregate", "dedupe"}

SPEED_NAMES = (
    "partitionable",
    "partitionable_with",
    "pure",
    "accepts_rows",
    "plan_slices",
    "execute_slice",
    "partitions_by_default",
    "partition_rows_for_run",
    "combinable",
    "combinable_with",
    "execute_partial",
    "combine",
)


def test_the_node_base_class_knows_no_speed_capability() -> None:
    assert [name for name in SPEED_NAMES if hasattr(Node, name)] == []


@pytest.mark.parametrize("type_name", sorted(BUILTIN_CAPABILITIES))
def test_each_builtin_declares_the_capabilities_the_engine_relied_on(type_name: str) -> None:
    cls = registry.get(type_name)
    assert cls is not None
    seen = (
        caps.partitionable_with(cls, {}),
        caps.is_pure(cls),
        caps.accepts_rows(cls),
        issubclass(cls, SlicedSource),
        caps.partitions_by_default(cls, {"connection": "files", "path": "*.csv"}),
    )
    assert seen == BUILTIN_CAPABILITIES[type_name]
    assert cls.describe()["partitionable"] is caps.is_partitionable(cls)
    assert caps.partitionable_with(cls, {}, by_port=True) is (type_name in BY_PORT)
    assert caps.is_combinable(cls) is (type_name in COMBINABLE)


def test_sql_write_replace_is_not_partitionable() -> None:
    cls = registry.get("sql_write")
    assert cls is not None
    assert caps.partitionable_with(cls, {"mode": "upsert"})
    assert not caps.partitionable_with(cls, {"mode": "replace"})


def test_a_plain_node_has_no_capability_and_plans_no_slices() -> None:
    class Plain(Node):
        type = "plain"

    assert not caps.is_partitionable(Plain)
    assert not caps.partitionable_with(Plain, {})
    assert not caps.is_pure(Plain) and not caps.accepts_rows(Plain)
    assert not caps.partitions_by_default(Plain, {})
    assert caps.plan_slices(Plain({}), ExecutionContext(), 10) is None
    assert Plain.describe()["partitionable"] is False


class _OldStyleConfig(NodeConfig):
    suffix: str = "!"


class _OldStyle(Node):
    """A plugin written against the earlier contract: capabilities as class attributes."""

    type = "old_style"
    Config = _OldStyleConfig
    partitionable = True
    pure = True
    accepts_rows = True

    def plan_slices(self, context: ExecutionContext, rows_per_slice: int) -> Iterable[Any]:
        return [{"part": 1}, {"part": 2}]


def test_a_plugin_declaring_capabilities_as_class_attributes_keeps_them() -> None:
    assert caps.partitionable_with(_OldStyle, {}) and caps.is_partitionable(_OldStyle)
    assert caps.is_pure(_OldStyle) and caps.accepts_rows(_OldStyle)
    node = _OldStyle({"suffix": "?"})
    assert list(caps.plan_slices(node, ExecutionContext(), 10) or []) == [{"part": 1}, {"part": 2}]
    assert isinstance(node.config, _OldStyleConfig) and node.config.suffix == "?"


def test_a_capability_attribute_that_is_not_true_declares_nothing() -> None:
    class Odd(Node):
        type = "odd"

        def pure(self) -> str:  # a method that happens to share the name
            return "yes"

    assert not caps.is_pure(Odd)


class _Config(NodeConfig):
    word: str = Field("hi", description="A word.")


class _Typed(Partitionable, Pure, AcceptsRows, Node[_Config]):
    type = "typed"

    def execute(
        self, context: ExecutionContext, inputs: Mapping[str, Iterable[AnyBatch]]
    ) -> Iterator[AnyBatch]:
        yield from inputs["in"]


def test_the_config_model_is_the_type_argument() -> None:
    assert _Typed.Config is _Config
    node = _Typed({"word": "hello"})
    assert isinstance(node.config, _Config) and node.config.word == "hello"
    assert _Typed.describe()["config_schema"]["properties"]["word"]["description"] == "A word."


def test_a_subclass_of_a_typed_node_keeps_its_config() -> None:
    class Stricter(FilterNode):
        type = "stricter_filter"

    assert Stricter.Config is FilterConfig
    assert caps.is_pure(Stricter)


def test_a_config_given_twice_must_agree() -> None:
    with pytest.raises(
        TypeError, match="Config is FilterConfig but the class is Node\\[_Config\\]"
    ):

        class Confused(Node[_Config]):
            type = "confused"
            Config = FilterConfig

    class Agreeing(Node[_Config]):
        type = "agreeing"
        Config = _Config

    assert Agreeing.Config is _Config


def test_row_batches_reach_only_the_nodes_that_accept_them() -> None:
    class Lists(Node):
        type = "lists"

        def execute(
            self, context: ExecutionContext, inputs: Mapping[str, RecordStream]
        ) -> Iterator[Batch]:
            yield from inputs["in"]

    batch = RowBatch(["id"], [(1,), (2,)])
    [given] = _Typed({}).run(ExecutionContext(), {"in": [batch]})
    assert given is batch
    [converted] = Lists({}).run(ExecutionContext(), {"in": [batch]})
    assert type(converted) is list and converted == [{"id": 1}, {"id": 2}]


def test_a_sliced_source_must_say_how_to_read_a_slice() -> None:
    class HalfDone(SlicedSource, Node):
        type = "half_done"
        inputs = ()

        def plan_slices(self, context: ExecutionContext, rows_per_slice: int) -> None:
            return None

    with pytest.raises(TypeError, match="execute_slice"):
        HalfDone({})  # type: ignore[abstract]


def test_the_plugin_example_of_the_authoring_guide_type_checks(tmp_path: Path) -> None:
    """The guide's node type checks under the project's strict mypy, without ``type: ignore``:
    ``self.config`` is typed through ``Node[UpperConfig]``."""
    guide = (ROOT / "docs" / "node-authoring.md").read_text(encoding="utf-8")
    example = re.search(r"```python\n(.*?)```", guide, re.S)
    assert example is not None
    assert "type: ignore" not in example.group(1)
    module = tmp_path / "upper_example.py"
    module.write_text(example.group(1), encoding="utf-8")
    mypy = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        "pyproject.toml",
        "--cache-dir",
        os.devnull,
    ]
    checked = subprocess.run(
        [*mypy, str(module)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
