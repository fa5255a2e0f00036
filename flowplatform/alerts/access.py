"""Who may write a flow's alerts: ``change`` on the flow, and the use of the connection named.

A webhook alert posts the flow's run details with a connection's credentials, so naming a
connection limited to some groups needs the use of it (``nodes.access``), as in a node.
"""

from __future__ import annotations

from typing import Any

from flows.models import Flow
from flows.validation import FlowProblem
from nodes.access import refused_connections


def section_rights(flow: Flow | None, value: Any) -> set[str]:
    """Changing the alerts of an existing flow needs ``change`` (a new flow: its creator has it)."""
    from flowplatform.alerts.flowfile import export_section

    if flow is None or not isinstance(value, list):
        return set()
    return set() if (export_section(flow) or []) == value else {"change"}


def check_connections(user: Any, value: Any) -> list[FlowProblem]:
    """A problem per alert naming a connection ``user`` may not use."""
    named = [
        (index, item["connection"])
        for index, item in enumerate(value if isinstance(value, list) else [])
        if isinstance(item, dict) and isinstance(item.get("connection"), str)
    ]
    refused = refused_connections(user, (name for _, name in named))
    return [
        FlowProblem(
            f"alerts[{index}].connection",
            f"you may not use connection '{name}' (it is limited to some groups)",
        )
        for index, name in named
        if name in refused
    ]


def claim(flow: Flow, value: Any, user: Any) -> None:
    """Nothing to record: alerts are sent for the flow, not as a user."""
