"""Who may use a connection in a flow: ``Connection.allowed_groups`` (empty: everyone).

A user passes when a superuser, when holding the global ``nodes.use_connection`` permission,
or when in one of the connection's allowed groups. A connection name that does not exist
passes here: flow validation and the run report it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nodes.models import Connection

USE_PERMISSION = "nodes.use_connection"


def connection_names(config: Any) -> list[str]:
    """The connections a node's config names: its ``connection`` field (the SDK convention)."""
    if isinstance(config, dict) and isinstance(config.get("connection"), str):
        return [config["connection"]]
    return []


def refused_connections(user: Any, names: Iterable[str]) -> set[str]:
    """Those of ``names`` that ``user`` may not use."""
    wanted = set(names)
    if not wanted or getattr(user, "is_superuser", False) or user.has_perm(USE_PERMISSION):
        return set()
    limited = Connection.objects.filter(name__in=wanted, allowed_groups__isnull=False)
    refused = limited.exclude(allowed_groups__user=user) if user.is_authenticated else limited
    return set(refused.values_list("name", flat=True))
