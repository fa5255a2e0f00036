"""Follow a run from outside: yield a line whenever a node's status or row count changes."""

from __future__ import annotations

import time
from collections.abc import Iterator

from flows.counts import DEFAULT_LABELS, count_labels, counted, ports_text
from flows.models import FlowRun, NodeRun
from flows.runend import RunEndListener


def node_line(node: NodeRun) -> str:
    labels = count_labels(node.node_type)
    if labels == DEFAULT_LABELS:
        counts = f"rows in {node.rows_in:>9,}  out {node.rows_out:>9,}"
    else:
        counts = f"{counted(node.rows_in, labels[0])}, {counted(node.rows_out, labels[1])}"
    line = f"{node.node_key:<20} {node.status:<10} {counts}"
    if node.duration_ms is not None:
        line += f"  {node.duration_ms / 1000:7.2f}s"
    if node.rows_by_port:
        line += f"  ports: {ports_text(node.rows_by_port)}"
    return line


def watch_run(run: FlowRun, timeout: float, poll_s: float = 0.25) -> Iterator[str]:
    """Yield progress lines until the run finishes or ``timeout`` passes (run is refreshed).

    Progress is looked at every ``poll_s`` seconds; the run's end is heard at once
    (``flows.runend``)."""
    deadline = time.monotonic() + timeout
    seen: dict[str, tuple[str, int, int]] = {}
    with RunEndListener(str(run.id)) as ended:  # before the first read: no end is missed
        while True:
            run.refresh_from_db()
            for node in run.node_runs.order_by("position"):
                state = (node.status, node.rows_in, node.rows_out)
                if seen.get(node.node_key) != state and node.status != "pending":
                    seen[node.node_key] = state
                    yield node_line(node)
            left = deadline - time.monotonic()
            if run.is_finished or left <= 0:
                return
            ended.wait(min(poll_s, left))


def summary_table(run: FlowRun) -> list[str]:
    """One line per node; a node whose counts mean something else says what after its time
    (``http_post``: ``in = records sent, out = requests``)."""
    header = f"{'NODE':<20} {'STATUS':<10} {'ROWS IN':>9} {'ROWS OUT':>9} {'TIME':>8}"
    lines = [header]
    for node in run.node_runs.order_by("position"):
        duration = f"{node.duration_ms / 1000:.2f}s" if node.duration_ms is not None else "-"
        line = f"{node.node_key:<20} {node.status:<10} {node.rows_in:>9,} {node.rows_out:>9,} {duration:>8}"
        labels = count_labels(node.node_type)
        if labels != DEFAULT_LABELS:
            line += f"  (in = {labels[0]}, out = {labels[1]})"
        if node.rows_by_port:
            line += f"  ports: {ports_text(node.rows_by_port)}"
        lines.append(line)
    return lines
