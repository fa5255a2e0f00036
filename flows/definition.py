"""The flow file: the JSON shape of a flow, shared by importflow/exportflow, the API and versions."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Slugs that name API actions on all flows (``/api/v1/flows/validate/``), not a flow.
RESERVED_SLUGS = frozenset({"validate", "preview"})

#: A Celery queue name.
QUEUE_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class NodePolicy(_Strict):
    """How the engine retries and limits one node."""

    max_retries: int = Field(
        default=0, ge=0, le=20, description="Retries after a failure that a retry can help."
    )
    retry_backoff_s: float = Field(
        default=2.0, gt=0, le=3600, description="First retry delay; doubles per retry, jittered."
    )
    retry_backoff_max_s: float = Field(default=300.0, gt=0, le=86400, description="Delay cap.")
    timeout_s: float | None = Field(
        default=None, gt=0, le=86400, description="Soft time limit of one attempt (hard: +30 s)."
    )
    queue: str | None = Field(
        default=None,
        pattern=QUEUE_PATTERN,
        description="Celery queue of this node's task (default: the flow's queue).",
    )


class NodeUI(_Strict):
    """Where the designer draws a node (canvas pixels); the engine ignores it."""

    x: float = Field(ge=-1_000_000, le=1_000_000, description="Left edge on the canvas.")
    y: float = Field(ge=-1_000_000, le=1_000_000, description="Top edge on the canvas.")


class NodeSpec(_Strict):
    key: str = Field(pattern=r"^[A-Za-z0-9_-]{1,100}$", description="Unique within the flow.")
    type: str = Field(min_length=1, max_length=100, description="A node type from the catalog.")
    config: dict[str, Any] = Field(default_factory=dict)
    policy: NodePolicy | None = None
    ui: NodeUI | None = None


class EdgeSpec(_Strict):
    source: str = Field(alias="from", min_length=1)
    source_port: str = Field(default="", alias="from_port")
    target: str = Field(alias="to", min_length=1)
    target_port: str = Field(default="", alias="to_port")


class FlowSpec(_Strict):
    slug: str = Field(pattern=r"^[A-Za-z0-9_-]{1,100}$")
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    run_timeout_s: int | None = Field(
        default=None, gt=0, le=7 * 86400, description="Fail a run still active after this."
    )
    queue: str = Field(
        default="",
        pattern=r"^([A-Za-z0-9_.:-]{1,100})?$",
        description="Celery queue of the flow's tasks (empty: the default queue).",
    )
    priority: int = Field(
        default=0, ge=-1000, le=1000, description="Waiting runs start highest priority first."
    )
    max_active_runs: int | None = Field(
        default=None, ge=1, le=100_000, description="Runs of the flow executing at once."
    )
    nodes: list[NodeSpec] = Field(min_length=1)
    edges: list[EdgeSpec] = Field(default_factory=list)
    schedules: list[dict[str, Any]] | None = None
    triggers: list[dict[str, Any]] | None = None
    alerts: list[dict[str, Any]] | None = None

    @field_validator("slug")
    @classmethod
    def _not_reserved(cls, slug: str) -> str:
        if slug.lower() in RESERVED_SLUGS:
            raise ValueError(f"'{slug}' is reserved (an API address): choose another slug")
        return slug
