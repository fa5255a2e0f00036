"""Flows, their immutable versions, and the record of every run and node run."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from flowplatform.jsonfields import OrderedJSONField


class Flow(models.Model):
    """A named graph of nodes. Its nodes and edges are editable; runs use a FlowVersion snapshot."""

    slug = models.SlugField("slug", max_length=100, unique=True, help_text="Stable identifier.")
    name = models.CharField("name", max_length=200)
    description = models.TextField("description", blank=True, default="")
    run_timeout_s = models.PositiveIntegerField(
        "run timeout (s)", null=True, blank=True, help_text="Fail a run still active after this."
    )
    queue = models.CharField(
        "queue",
        max_length=100,
        blank=True,
        default="",
        help_text="Celery queue of the flow's tasks (empty: the default queue); workers started "
        "with -Q NAME run them.",
    )
    priority = models.IntegerField(
        "priority",
        default=0,
        help_text="Runs waiting for a slot start highest priority first, then oldest first.",
    )
    max_active_runs = models.PositiveIntegerField(
        "max active runs",
        null=True,
        blank=True,
        help_text="Runs of this flow executing at once, whatever started them (empty: no limit); "
        "the others wait queued, in order.",
    )
    created_at = models.DateTimeField("created", auto_now_add=True)
    updated_at = models.DateTimeField("updated", auto_now=True)

    class Meta:
        ordering = ["slug"]
        permissions = [("run_flow", "Can start and cancel runs of a flow")]

    def __str__(self) -> str:
        return self.slug

    @property
    def latest_version(self) -> FlowVersion | None:
        return self.versions.order_by("-number").first()


class FlowNode(models.Model):
    """One node of a flow: a node type from the catalog and its config."""

    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="nodes")
    key = models.SlugField("key", max_length=100, help_text="Unique within the flow.")
    type = models.CharField("node type", max_length=100, help_text="A type from the node catalog.")
    config = OrderedJSONField(
        "config", default=dict, blank=True, help_text="Stored as written: keys keep their order."
    )
    policy = models.JSONField(
        "policy", default=dict, blank=True, help_text="Retries, backoff and timeout of this node."
    )
    position = models.PositiveIntegerField(
        "position", default=0, help_text="Order in the flow file."
    )
    ui = models.JSONField(
        "designer position",
        default=dict,
        blank=True,
        help_text="Where the designer draws the node ({x, y}); the engine ignores it.",
    )

    class Meta:
        ordering = ["flow", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["flow", "key"], name="flownode_unique_key")]

    def __str__(self) -> str:
        return f"{self.flow.slug}.{self.key}"


class FlowEdge(models.Model):
    """Records flow from one node's output port to another node's input port."""

    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="edges")
    source = models.ForeignKey(FlowNode, on_delete=models.CASCADE, related_name="out_edges")
    source_port = models.CharField("from port", max_length=100, blank=True, default="")
    target = models.ForeignKey(FlowNode, on_delete=models.CASCADE, related_name="in_edges")
    target_port = models.CharField("to port", max_length=100, blank=True, default="")
    position = models.PositiveIntegerField("position", default=0)

    class Meta:
        ordering = ["flow", "position", "id"]

    def __str__(self) -> str:
        return f"{self.source.key} -> {self.target.key}"


class FlowVersion(models.Model):
    """An immutable snapshot of a flow's graph (flow-file shape). Runs execute a version."""

    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField("number")
    definition = OrderedJSONField(
        "definition", help_text="The graph in flow-file form (keys in their order)."
    )
    checksum = models.CharField("checksum", max_length=64, help_text="sha256 of the definition.")
    created_at = models.DateTimeField("created", auto_now_add=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name="author",
        help_text="The user whose change made this version (empty: none, or since deleted).",
    )
    author_name = models.CharField(
        "author name",
        max_length=150,
        blank=True,
        default="",
        help_text="The author's name when the version was made (the OS user on the command line).",
    )

    class Meta:
        ordering = ["flow", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["flow", "number"], name="flowversion_unique_number")
        ]

    def __str__(self) -> str:
        return f"{self.flow.slug} v{self.number}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise ValueError("a FlowVersion is immutable once saved")
        super().save(*args, **kwargs)  # type: ignore[arg-type]


class RunStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"


class Trigger(models.TextChoices):
    MANUAL = "manual", "manual"
    API = "api", "API"
    SCHEDULE = "schedule", "schedule"
    BACKFILL = "backfill", "backfill"
    RERUN = "rerun", "rerun"
    WEBHOOK = "webhook", "webhook"
    UPSTREAM = "upstream", "another flow"
    FILE = "file", "file arrival"


ACTIVE_RUN_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)
FINISHED_RUN_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class FlowRun(models.Model):
    """One execution of a flow version."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # (no index of its own: flowrun_flow_status begins with it)
    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="runs", db_index=False)
    version = models.ForeignKey(FlowVersion, on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(
        "status", max_length=20, choices=RunStatus.choices, default=RunStatus.QUEUED
    )
    trigger = models.CharField("trigger", max_length=20, choices=Trigger.choices)
    params = models.JSONField("params", default=dict, blank=True)
    interval_start = models.DateTimeField("data interval start", null=True, blank=True)
    interval_end = models.DateTimeField("data interval end", null=True, blank=True)
    payload = models.JSONField(
        "payload",
        null=True,
        blank=True,
        help_text="What started the run sent with it (a webhook's JSON body, a file's name); "
        "the payload node and %(payload.x)s query parameters read it.",
    )
    created_at = models.DateTimeField("created", auto_now_add=True, db_index=True)
    started_at = models.DateTimeField("started", null=True, blank=True)
    finished_at = models.DateTimeField("finished", null=True, blank=True)
    error = models.TextField("error", blank=True, default="")
    redispatches = models.PositiveIntegerField(
        "re-dispatches", default=0, help_text="Times the reaper re-sent a stalled run."
    )
    redispatched_at = models.DateTimeField("last re-dispatch", null=True, blank=True)
    queue = models.CharField(
        "queue", max_length=100, blank=True, default="", help_text="The flow's queue at start."
    )
    priority = models.IntegerField("priority", default=0, help_text="The flow's at start.")
    limited = models.BooleanField(
        "slot limited",
        default=False,
        help_text="A slot limit applied to the run when it was recorded: its end may let a "
        "waiting run start.",
    )
    dispatched_at = models.DateTimeField(
        "dispatched",
        null=True,
        blank=True,
        help_text="When the run was handed to the workers; empty while it waits for a slot "
        "(max_active_runs, FLOWPLATFORM_MAX_ACTIVE_RUNS, per-queue limits).",
    )
    trace_id = models.CharField(
        "trace id",
        max_length=32,
        blank=True,
        default="",
        help_text="The run's OpenTelemetry trace (empty when tracing is off).",
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["flow", "status"], name="flowrun_flow_status"),
            models.Index(
                fields=["-priority", "created_at"],
                name="flowrun_waiting_for_slot",
                condition=Q(status="queued", dispatched_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.flow.slug} run {self.id}"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_RUN_STATUSES

    @property
    def trace_url(self) -> str:
        """A link to the run's trace (``FLOWPLATFORM_TRACE_URL_TEMPLATE``), or ""."""
        from flowplatform.telemetry import trace_url

        return trace_url(self.trace_id)

    @property
    def duration_s(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class NodeStatus(models.TextChoices):
    PENDING = "pending", "pending"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    SKIPPED = "skipped", "skipped"
    CANCELLED = "cancelled", "cancelled"


FINISHED_NODE_STATUSES = (
    NodeStatus.SUCCEEDED,
    NodeStatus.FAILED,
    NodeStatus.SKIPPED,
    NodeStatus.CANCELLED,
)


class NodeRun(models.Model):
    """One node's execution within a run."""

    # (no index of its own: noderun_unique_node begins with it. Each index is written again by
    # every take and finish of a node run, none of which is a HOT update: decision 0048.)
    run = models.ForeignKey(
        FlowRun, on_delete=models.CASCADE, related_name="node_runs", db_index=False
    )
    node_key = models.CharField("node", max_length=100)
    node_type = models.CharField("node type", max_length=100)
    position = models.PositiveIntegerField("position", default=0)
    status = models.CharField(
        "status", max_length=20, choices=NodeStatus.choices, default=NodeStatus.PENDING
    )
    attempts = models.PositiveIntegerField("attempts", default=0, help_text="Executions started.")
    deliveries = models.PositiveIntegerField(
        "deliveries", default=0, help_text="Times a worker received this node's task."
    )
    rows_in = models.BigIntegerField("rows in", default=0)
    rows_out = models.BigIntegerField("rows out", default=0)
    rows_out_by_port = models.JSONField(
        "rows out by port",
        null=True,
        blank=True,
        help_text="Records out of each output port, in port order ([[port, count], ...]), for a "
        "node whose output is kept per port (a branch: one port per route); empty for a node "
        "with one output.",
    )
    started_at = models.DateTimeField("started", null=True, blank=True)
    finished_at = models.DateTimeField("finished", null=True, blank=True)
    heartbeat_at = models.DateTimeField("heartbeat", null=True, blank=True)
    duration_ms = models.PositiveBigIntegerField("duration (ms)", null=True, blank=True)
    error = models.TextField("error", blank=True, default="")
    traceback = models.TextField("traceback", blank=True, default="")
    output_ref = models.TextField(
        "output",
        blank=True,
        default="",
        help_text="Where the node's output is: a flow-data storage name, or a small output "
        "itself ('inline:' and its encoded records).",
    )
    workers_lost = models.PositiveIntegerField(
        "workers lost", default=0, help_text="Deliveries whose worker died mid-execution."
    )
    fence = models.PositiveBigIntegerField(
        "fence",
        default=0,
        help_text="Fencing token: raised at every take of the node; each later change by the "
        "taker names it, so a taker whose lease was taken over changes nothing.",
    )
    lease_owner = models.CharField(
        "lease owner",
        max_length=200,
        blank=True,
        default="",
        help_text="The process executing the node (host/pid namespace:pid:token); empty when "
        "none is.",
    )
    lease_expires_at = models.DateTimeField(
        "lease expires",
        null=True,
        blank=True,
        help_text="Until when the owner holds the node unless it beats again; past it, another "
        "delivery takes the node over.",
    )
    task_id = models.CharField("task id", max_length=255, blank=True, default="")
    checkpoint = models.JSONField(
        "checkpoint", null=True, blank=True, help_text="Progress a re-delivered node resumes from."
    )
    reused_from = models.ForeignKey(
        FlowRun,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # (noderun_reused_from: the few rows that have one)
        help_text="The run whose output this node reused (reruns from a later node).",
    )
    partitioned = models.BooleanField(
        "run by partitions",
        default=False,
        help_text="The node ran partition by partition (a partitioned source and the stretch "
        "after it): its partitions are listed with it, its rows are their sum.",
    )

    class Meta:
        ordering = ["run", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "node_key"], name="noderun_unique_node"),
        ]
        indexes = [
            models.Index(
                fields=["lease_expires_at"],
                name="noderun_running_lease",
                condition=Q(status="running"),
            ),
            models.Index(
                fields=["reused_from"],
                name="noderun_reused_from",
                condition=Q(reused_from__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.node_key}"

    def partition_summaries(self) -> list[dict[str, Any]]:
        """The partitions this node run was executed by, in order, with this node's rows in
        each (what the API and the run page show); empty for a node run executed whole."""
        if not self.partitioned:
            return []
        shown = []
        for part in self._run_partitions():
            if self.node_key not in part.nodes:
                continue
            rows_in, rows_out = part.rows_of(self.node_key)
            shown.append(
                {
                    "partition": part.index,
                    "status": part.status,
                    "attempts": part.attempts,
                    "workers_lost": part.workers_lost,
                    "rows_in": rows_in,
                    "rows_out": rows_out,
                    "started_at": part.started_at,
                    "finished_at": part.finished_at,
                    "duration_ms": part.duration_ms,
                    "error": part.error,
                }
            )
        return shown

    def _run_partitions(self) -> list[PartitionRun]:
        """The run's partitions as shown (no traceback, no checkpoint), loaded once for the
        node runs sharing one run instance (``run.node_runs.all()`` gives them so)."""
        run = self.run if NodeRun.run.is_cached(self) else None
        loaded: list[PartitionRun] | None = getattr(run, "_partitions_shown", None)
        if loaded is None:
            loaded = list(
                PartitionRun.objects.filter(run_id=self.run_id)
                .order_by("source", "index")
                .only(*PARTITION_SHOWN)
            )
            if run is not None:
                setattr(run, "_partitions_shown", loaded)  # noqa: B010 - not a model field
        return loaded

    @property
    def rows_by_port(self) -> dict[str, int] | None:
        """``rows_out_by_port`` as a dict in port order (``None``: the output is not per port)."""
        pairs = self.rows_out_by_port
        return None if pairs is None else {str(port): int(rows) for port, rows in pairs}


class FlowAccess(models.Model):
    """Rights on one flow granted to one user or one group (on top of the global permissions).

    ``change`` and ``run`` imply ``view``. Rules and their use: ``flows.access``.
    """

    flow = models.ForeignKey(
        Flow, on_delete=models.CASCADE, related_name="access_grants", verbose_name="flow"
    )
    user = models.ForeignKey(
        "auth.User",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="flow_grants",
        verbose_name="user",
    )
    group = models.ForeignKey(
        "auth.Group",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="flow_grants",
        verbose_name="group",
    )
    can_view = models.BooleanField("view", default=True, help_text="See the flow and its runs.")
    can_change = models.BooleanField(
        "change", default=False, help_text="Edit the flow (implies view)."
    )
    can_run = models.BooleanField(
        "run",
        default=False,
        help_text="Start, cancel and re-run runs; create and enable schedules (implies view).",
    )
    created_at = models.DateTimeField("created", auto_now_add=True)

    class Meta:
        ordering = ["flow", "id"]
        verbose_name = "flow access grant"
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, group__isnull=True)
                | Q(user__isnull=True, group__isnull=False),
                name="flowaccess_user_or_group",
            ),
            models.UniqueConstraint(
                fields=["flow", "user"], condition=Q(user__isnull=False), name="flowaccess_user"
            ),
            models.UniqueConstraint(
                fields=["flow", "group"], condition=Q(group__isnull=False), name="flowaccess_group"
            ),
        ]

    def __str__(self) -> str:
        rights = [r for r in ("view", "change", "run") if getattr(self, f"can_{r}")]
        who = f"user {self.user}" if self.user_id else f"group {self.group}"
        return f"{who}: {', '.join(rights) or 'nothing'}"


#: The fields of a partition its node runs show (``NodeRun.partition_summaries``).
PARTITION_SHOWN = (
    "run_id", "source", "index", "nodes", "status", "attempts", "workers_lost", "rows",
    "started_at", "finished_at", "duration_ms", "error",
)  # fmt: skip


class PartitionRun(models.Model):
    """One partition of a partitioned source's output, executed through the stretch of nodes
    after the source by one task: leased, retried, checkpointed and cancelled as a node run is
    (``flows.transitions``). The node runs of the source and of the stretch are finished once
    every partition has succeeded, with the partitions' rows summed."""

    run = models.ForeignKey(FlowRun, on_delete=models.CASCADE, related_name="partition_runs")
    source = models.CharField("source", max_length=100, help_text="The partitioned source node.")
    index = models.PositiveIntegerField("partition")
    nodes = models.JSONField(
        "nodes", default=list, help_text="The nodes the partition runs through, in order."
    )
    status = models.CharField(
        "status", max_length=20, choices=NodeStatus.choices, default=NodeStatus.PENDING
    )
    attempts = models.PositiveIntegerField("attempts", default=0, help_text="Executions started.")
    deliveries = models.PositiveIntegerField("deliveries", default=0)
    workers_lost = models.PositiveIntegerField("workers lost", default=0)
    resends = models.PositiveIntegerField(
        "resends", default=0, help_text="Times its task was sent again, its worker lost."
    )
    resent_at = models.DateTimeField("resent", null=True, blank=True)
    rows = models.JSONField(
        "rows",
        default=dict,
        blank=True,
        help_text="Rows in and out of each node: {key: [in, out]}.",
    )
    failed_node = models.CharField(
        "failed node", max_length=100, blank=True, default="", help_text="The node that raised."
    )
    error = models.TextField("error", blank=True, default="")
    traceback = models.TextField("traceback", blank=True, default="")
    started_at = models.DateTimeField("started", null=True, blank=True)
    finished_at = models.DateTimeField("finished", null=True, blank=True)
    heartbeat_at = models.DateTimeField("heartbeat", null=True, blank=True)
    duration_ms = models.PositiveBigIntegerField("duration (ms)", null=True, blank=True)
    fence = models.PositiveBigIntegerField("fence", default=0)
    lease_owner = models.CharField("lease owner", max_length=200, blank=True, default="")
    lease_expires_at = models.DateTimeField("lease expires", null=True, blank=True)
    checkpoint = models.JSONField(
        "checkpoint",
        null=True,
        blank=True,
        help_text="Where each node of a re-delivered partition resumes from: {key: value}.",
    )
    task = models.JSONField(
        "task",
        null=True,
        blank=True,
        help_text="The partition's task as it was sent (its id, chord and arguments): sent "
        "again by the reaper when the worker executing it died. Empty in embedded mode.",
    )

    class Meta:
        ordering = ["run", "source", "index"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "source", "index"], name="partitionrun_unique_partition"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.source}:p{self.index}"

    def rows_of(self, node_key: str) -> tuple[int, int]:
        """(rows in, rows out) of one node of the partition (zeros before it ran)."""
        figures = (self.rows or {}).get(node_key, (0, 0))
        return int(figures[0]), int(figures[1])

    def port_rows_of(self, node_key: str) -> dict[str, int]:
        """The rows out of each port of a node whose output is kept per port (``branch``), in
        port order; empty for any other node."""
        figures = (self.rows or {}).get(node_key, ())
        return {str(port): int(rows) for port, rows in figures[2]} if len(figures) > 2 else {}
