"""Compile a run's DAG into a Celery canvas.

The graph is cut into levels (a node's level is one more than its deepest parent). A level of
one node is a task; a level of several is a ``group``; a group followed by a task becomes a
``chord``. The canvas is ``chain(level0, level1, ..., finish_run)``, where a last level of one
node closes the run itself instead of ``finish_run``; every signature is
immutable (``si``): nodes find their inputs in flow-data storage, never in a parent's result,
so messages stay small whatever the data size.

A source whose output may run by partitions through the nodes after it has a step of its own,
after the other nodes of its level (``_fan_out_alone``): its task can then hand itself over to
its fan-out, and a join's right side in that level is done before its partitions probe it.
"""

from __future__ import annotations

from typing import Any

from celery import chain, group
from celery.canvas import Signature

from flows.engine import tasks
from flows.engine.executor import fan_out_rows
from flows.engine.partitions import combiners_after, stretch_after
from flows.graph import Graph


def node_task_id(run_id: str, node_key: str, generation: int = 0) -> str:
    """Deterministic task ids let ``cancel`` revoke a run's tasks without storing them."""
    return f"{run_id}:{node_key}:{generation}"


def node_signature(
    run_id: str,
    node: dict[str, Any],
    generation: int = 0,
    close: bool = False,
    linear: bool = False,
    queue: str = "",
) -> Signature:
    """The task of one node, with its time limits from the node's policy. ``close``: the
    run's last task, which ends the run; ``linear``: the canvas is a plain chain, whose tasks'
    results nobody reads (the run's state is in the database), so they are not stored."""
    args = (run_id, node["key"], True) if close else (run_id, node["key"])
    signature = tasks.run_node.si(*args).set(task_id=node_task_id(run_id, node["key"], generation))
    if linear:
        signature.set(ignore_result=True)
    policy = node.get("policy") or {}
    if policy.get("queue") or queue:
        signature.set(queue=policy.get("queue") or queue)
    timeout = policy.get("timeout_s")
    if timeout:
        signature.set(soft_time_limit=timeout, time_limit=timeout + HARD_LIMIT_GRACE_S)
    return signature


HARD_LIMIT_GRACE_S = 30


def build_canvas(
    run_id: str,
    definition: dict[str, Any],
    only: set[str] | None = None,
    generation: int = 0,
    queue: str = "",
) -> Signature:
    """The run's canvas; ``only`` restricts it to some nodes (resume, rerun from a node).
    ``queue``: the Celery queue of its tasks (a node's ``policy.queue`` wins for that node)."""
    nodes = {node["key"]: node for node in definition["nodes"]}
    levels = [
        [key for key in full_level if only is None or key in only]
        for full_level in Graph.from_definition(definition).levels()
    ]
    # (a node feeding a join's right side first: its partitions probe it whole)
    right = {edge["from"] for edge in definition["edges"] if edge.get("to_port") == "right"}
    fanning = {
        key
        for key, node in nodes.items()
        if fan_out_rows(node) is not None
        and (stretch_after(definition, key) or combiners_after(definition, key, []))
    }
    levels = [step for level in levels if level for step in _fan_out_alone(level, fanning, right)]
    linear = all(len(level) == 1 for level in levels)
    steps: list[Signature] = []
    for level in levels:
        if steps and isinstance(steps[-1], group) and len(level) > 1:
            steps.append(_routed(tasks.barrier.si(), queue))
        if len(level) == 1:
            steps.append(
                node_signature(run_id, nodes[level[0]], generation, linear=linear, queue=queue)
            )
        else:
            steps.append(
                group(node_signature(run_id, nodes[key], generation, queue=queue) for key in level)
            )
    if levels and len(levels[-1]) == 1:
        # The last node ends the run itself: one message fewer than a closing task.
        last = nodes[levels[-1][0]]
        steps[-1] = node_signature(run_id, last, generation, close=True, linear=linear, queue=queue)
    else:
        steps.append(_routed(tasks.finish_run.si(run_id), queue))
    canvas = chain(*steps)
    canvas.on_error(_routed(tasks.fail_run.s(run_id), queue))
    return canvas


def _fan_out_alone(level: list[str], fanning: set[str], right: set[str]) -> list[list[str]]:
    """A level's steps: a source whose output may run by partitions through nodes after it
    (``fanning``) gets a step of its own after the level's other nodes, so that it can hand its task over to its
    fan-out (a task inside a group cannot) and a join's right side in the same level is done
    before its partitions probe it (a source feeding a right side comes first)."""
    if len(level) == 1:
        return [level]
    alone = [key for key in level if key in fanning]
    alone.sort(key=lambda key: key not in right)
    rest = [key for key in level if key not in alone]
    return ([rest] if rest else []) + [[key] for key in alone]


def _routed(signature: Signature, queue: str) -> Signature:
    return signature.set(queue=queue) if queue else signature
