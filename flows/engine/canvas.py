"""Compile a run's DAG into a Celery canvas.

The graph is cut into levels (a node's level is one more than its deepest parent). A level of
one node is a task; a level of several is a ``group``; a group followed by a task becomes a
``chord``. The canvas is ``chain(level0, level1, ..., finish_run)``; every signature is
immutable (``si``): nodes find their inputs in flow-data storage, never in a parent's result,
so messages stay small whatever the data size.
"""

from __future__ import annotations

from typing import Any

from celery import chain, group
from celery.canvas import Signature

from flows.engine import tasks
from flows.graph import Graph


def build_canvas(run_id: str, definition: dict[str, Any]) -> Signature:
    steps: list[Signature] = []
    for level in Graph.from_definition(definition).levels():
        if steps and isinstance(steps[-1], group) and len(level) > 1:
            steps.append(tasks.barrier.si())
        if len(level) == 1:
            steps.append(tasks.run_node.si(run_id, level[0]))
        else:
            steps.append(group(tasks.run_node.si(run_id, key) for key in level))
    steps.append(tasks.finish_run.si(run_id))
    canvas = chain(*steps)
    canvas.on_error(tasks.fail_run.s(run_id))
    return canvas
