"""A node run's two counts as users read them: "rows in"/"rows out", or what the node type
says they are (``Node.counts``: ``http_post`` sends records and makes requests)."""

from __future__ import annotations

from nodes.registry import registry

DEFAULT_LABELS = ("rows in", "rows out")


def count_labels(node_type: str) -> tuple[str, str]:
    """What ``rows_in`` and ``rows_out`` mean for ``node_type``."""
    cls = registry.get(node_type)
    return cls.counts if cls is not None and cls.counts else DEFAULT_LABELS


def counts_text(node_type: str, rows_in: int | None, rows_out: int | None) -> str:
    """One short phrase: ``in 120 · out 80``, or ``80 records sent · 1 request``."""
    rows_in, rows_out = rows_in or 0, rows_out or 0
    labels = count_labels(node_type)
    if labels == DEFAULT_LABELS:
        return f"in {rows_in:,} · out {rows_out:,}"
    return f"{counted(rows_in, labels[0])} · {counted(rows_out, labels[1])}"


def counted(value: int, label: str) -> str:
    """``1 request``, ``2 requests``, ``1 record sent``: the label's first word follows the
    number (labels are written in the plural)."""
    if value != 1:
        return f"{value:,} {label}"
    first, _, rest = label.partition(" ")
    singular = first[:-1] if first.endswith("s") else first
    return f"1 {singular}{f' {rest}' if rest else ''}"


def rows_by_port(node_type: str, rows_out: int, by_port: dict[str, int] | None) -> dict[str, int]:
    """The records out of each output port: as counted for a node whose output is kept per
    port (a branch), else all of ``rows_out`` on the node type's only output port."""
    if by_port is not None:
        return dict(by_port)
    cls = registry.get(node_type)
    if cls is not None and len(cls.outputs) == 1 and not cls.dynamic_outputs:
        return {cls.outputs[0].name: rows_out}
    return {}


def ports_text(by_port: dict[str, int] | None) -> str:
    """``paid 12 · refunded 3``: the per-port counts of a node that keeps them, else ""."""
    return " · ".join(f"{port} {rows:,}" for port, rows in (by_port or {}).items())
