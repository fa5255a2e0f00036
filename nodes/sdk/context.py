"""What a node may know about the run it is part of."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from nodes.redaction import Redactor


@dataclass(frozen=True)
class ConnectionInfo:
    """A named connection as a node sees it: the decrypted URL and extra headers.

    ``repr`` hides the URL and headers so that a logged context never leaks a secret.
    """

    name: str
    url: str = field(repr=False)
    #: Read-only (a copy of the mapping given): one instance may be shared by the runs of a
    #: process (``nodes.models.lookup_connection`` keeps it), so no node may change it.
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))

    @property
    def scheme(self) -> str:
        return self.url.split(":", 1)[0].lower()


def _no_connections(name: str) -> ConnectionInfo:
    from nodes.sdk.errors import NodeError

    raise NodeError(f"connection '{name}' does not exist", permanent=True)


def _never_cancelled() -> bool:
    return False


def _forget_checkpoint(value: Any) -> None:
    return None


@dataclass
class ExecutionContext:
    """The run values, services and identity a node executes with.

    ``run_values`` are what queries may bind: the run's params plus ``interval_start``,
    ``interval_end``, ``run_id`` and ``logical_date``; ``payload_value`` reads one scalar of
    the payload (``%(payload.order_id)s``).
    """

    run_id: str = "local"
    node_key: str = "node"
    #: The slug of the flow the run belongs to ("" outside a flow).
    flow: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    interval_start: datetime | None = None
    interval_end: datetime | None = None
    attempt: int = 1
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("flowplatform.node"))
    connection_lookup: Callable[[str], ConnectionInfo] = _no_connections
    storage: Any = None  # a Django Storage for node scratch data, or None
    is_cancelled: Callable[[], bool] = _never_cancelled
    partition: int | None = None
    #: What ``save_checkpoint`` stored during an earlier, interrupted delivery (or None).
    checkpoint: Any = None
    #: Persist JSON-able progress so a re-delivered node can resume (e.g. acknowledged batches).
    save_checkpoint: Callable[[Any], None] = _forget_checkpoint
    #: Hides the secrets of the connections looked up so far: pass error text a peer or a
    #: driver sends back through ``redactor.cut(text, limit)`` (the engine redacts what the
    #: node raises with it too).
    redactor: Redactor = field(default_factory=Redactor)
    #: What the trigger sent with the run (a webhook's JSON body, an arriving file), or None.
    payload: Any = None
    #: Set in a data preview: read at most this many records (a source pushes the limit down:
    #: ``LIMIT`` for SQL, the first page of an API, the first rows of the first file). ``None``:
    #: a real run.
    sample_limit: int | None = None
    #: ``time.monotonic()`` by which the node must be done (a preview's time bound), or None.
    deadline: float | None = None
    #: The stored references each input port is read from, in order, when the engine reads
    #: them from storage (empty when unknown). What is behind a reference does not change
    #: within a run, so a node may key a cache with them (``join``'s right side per process).
    input_refs: dict[str, list[str]] = field(default_factory=dict)

    @property
    def previewing(self) -> bool:
        """Whether this is a data preview (no side effect may happen)."""
        return self.sample_limit is not None

    def time_left(self, default: float) -> float:
        """Seconds a blocking wait may take: ``default``, or less when a deadline is nearer
        (never below a hundredth of a second). Bound statement and request timeouts with it."""
        if self.deadline is None:
            return default
        return max(0.01, min(default, self.deadline - time.monotonic()))

    def connection(self, name: str) -> ConnectionInfo:
        """The named connection (its secrets now known to ``redactor``); raises a permanent
        NodeError when there is none."""
        connection = self.connection_lookup(name)
        self.redactor.add_connection(connection)
        return connection

    @property
    def run_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "run_id": self.run_id,
            "interval_start": self.interval_start,
            "interval_end": self.interval_end,
            "logical_date": self.interval_start,
        }
        values.update(self.params)
        return values

    def payload_value(self, path: str) -> Any:
        """The scalar at the dotted ``path`` of the payload; a permanent NodeError when it is
        missing or not a scalar (a query binds values, never objects or lists)."""
        from nodes.builtin.paths import MISSING, get_path
        from nodes.sdk.errors import NodeError

        value = get_path(self.payload, path) if self.payload is not None else MISSING
        if value is MISSING:
            raise NodeError(f"the run's payload has no value at '{path}'", permanent=True)
        if not (value is None or isinstance(value, str | int | float | bool)):
            raise NodeError(
                f"payload.{path} is a {type(value).__name__}: only scalar values can be bound",
                permanent=True,
            )
        return value
