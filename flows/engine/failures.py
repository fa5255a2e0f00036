"""What a failed execution leads to, the same for a node run and a partition: retry it after a
backoff while the node's policy allows, or fail it (and the run).

Both ``flows.engine.tasks`` (a node) and ``flows.engine.partitions`` (a partition through a
stretch of nodes) ask here; neither imports the other for it.
"""

from __future__ import annotations

from typing import Any

from flows.definition import NodePolicy
from nodes.backoff import jittered_backoff
from nodes.sdk import NodeError


class NodeFailed(Exception):
    """Raised by a node task after recording the failure, to stop the rest of the canvas."""


def node_policy(spec: dict[str, Any]) -> NodePolicy:
    """The retries, backoff and timeout of a node of a definition."""
    return NodePolicy.model_validate(spec.get("policy") or {})


def retry_delay(policy: NodePolicy, attempt: int) -> float:
    """The delay before retry number ``attempt`` (1-based): exponential backoff with full
    jitter, capped."""
    return jittered_backoff(policy.retry_backoff_s, policy.retry_backoff_max_s, attempt - 1)


def retries_done(attempts: int, workers_lost: int) -> int:
    """Retries so far of a node run or partition: its attempts, less the first and those whose
    worker died (a lost worker is not the node's failure)."""
    return attempts - 1 - workers_lost


def next_retry(
    policy: NodePolicy, attempts: int, workers_lost: int, permanent: bool
) -> float | None:
    """The delay before the next retry of a failure, or ``None`` when it fails for good (a
    permanent failure, or the policy's retries are used up)."""
    done = retries_done(attempts, workers_lost)
    if permanent or done >= policy.max_retries:
        return None
    return retry_delay(policy, done + 1)


def message(exc: BaseException) -> str:
    """A failure as recorded: a NodeError's own words, else the exception's type and text."""
    return str(exc) if isinstance(exc, NodeError) else f"{type(exc).__name__}: {exc}"
