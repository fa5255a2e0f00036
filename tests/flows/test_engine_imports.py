"""The engine's modules import one another without a cycle, lazily or not: a reader can follow
a node task from ``start_run`` to its end one module at a time."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

ENGINE = ROOT / "flows" / "engine"
PACKAGE = "flows.engine"


def engine_modules() -> dict[str, Path]:
    return {f"{PACKAGE}.{path.stem}": path for path in sorted(ENGINE.glob("*.py"))}


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The engine modules ``path`` imports anywhere (at the top or inside a function)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def test_no_import_cycle_among_the_engine_modules() -> None:
    modules = engine_modules()
    graph = {name: imports_of(path, set(modules)) - {name} for name, path in modules.items()}
    assert graph[f"{PACKAGE}.tasks"] >= {f"{PACKAGE}.partitions"}  # the graph is read at all
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycle = [*visiting[visiting.index(name) :], name]
            pytest.fail(f"import cycle: {' -> '.join(cycle)}")
        visiting.append(name)
        for imported in sorted(graph[name]):
            visit(imported)
        visiting.pop()
        done.add(name)

    for name in graph:
        visit(name)


@pytest.mark.parametrize("module", [f"{PACKAGE}.partitions", f"{PACKAGE}.tasks"])
def test_the_partition_and_node_tasks_import_alone_in_a_fresh_interpreter(module: str) -> None:
    code = f"import django; django.setup(); import {module}"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
