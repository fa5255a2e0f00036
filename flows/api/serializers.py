"""Serializers of the flows API.

Flow graphs are validated by ``flows.validation`` (the same checks and messages as the CLI);
the flow serializers here describe the shape for the OpenAPI document and render responses.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from flowplatform.api.serializers import ErrorItemSerializer, StrictSerializer
from flows.api import examples
from flows.counts import count_labels, rows_by_port
from flows.models import FlowRun, FlowVersion, NodeRun, NodeStatus
from flows.sections import run_details

KEY_PATTERN = r"^[A-Za-z0-9_-]{1,100}$"


# Renders the keys the flow document has, in the serializer's (the file's) order: a key the
# file leaves out stays out rather than coming back as null, so a flow read from the API is its
# flow file (decision 0033). A comment, not a docstring: subclasses would show it in the schema.
class AsWrittenSerializer(serializers.Serializer):
    def to_representation(self, instance: Any) -> Any:
        data = super().to_representation(instance)
        if isinstance(instance, dict):
            return {key: value for key, value in data.items() if key in instance}
        return data


class NodePolicySerializer(AsWrittenSerializer):
    """How the engine retries and limits one node."""

    max_retries = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=20,
        help_text="Retries after a failure that a retry can help.",
    )
    retry_backoff_s = serializers.FloatField(
        required=False, help_text="First retry delay; doubles per retry, jittered."
    )
    retry_backoff_max_s = serializers.FloatField(required=False, help_text="Delay cap.")
    timeout_s = serializers.FloatField(
        required=False, allow_null=True, help_text="Soft time limit of one attempt."
    )
    queue = serializers.CharField(
        required=False,
        allow_null=True,
        max_length=100,
        help_text="Celery queue of this node's task (default: the flow's queue).",
    )


class NodeUISerializer(AsWrittenSerializer):
    """Where the designer draws the node; the engine ignores it."""

    x = serializers.FloatField(help_text="Left edge on the canvas, in pixels.")
    y = serializers.FloatField(help_text="Top edge on the canvas, in pixels.")


class FlowNodeSerializer(AsWrittenSerializer):
    key = serializers.RegexField(KEY_PATTERN, help_text="Unique within the flow.")
    type = serializers.CharField(max_length=100, help_text="A node type from `/api/v1/nodes/`.")
    config = serializers.DictField(
        required=False, help_text="The node's config; its JSON Schema is in the node catalog."
    )
    policy = NodePolicySerializer(required=False)
    ui = NodeUISerializer(required=False)


class FlowEdgeSerializer(AsWrittenSerializer):
    """Records flow from one node's output port to another node's input port."""

    # `from` is a Python keyword, hence the fields are declared here rather than as attributes.
    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            "from": serializers.CharField(help_text="Key of the upstream node."),
            "from_port": serializers.CharField(
                required=False, help_text="Output port; needed only when the node has several."
            ),
            "to": serializers.CharField(help_text="Key of the downstream node."),
            "to_port": serializers.CharField(
                required=False, help_text="Input port; needed only when the node has several."
            ),
        }


class FlowGraphSerializer(serializers.Serializer):
    """The versioned part of a flow: nodes and edges, as in a flow file."""

    nodes = FlowNodeSerializer(many=True)
    edges = FlowEdgeSerializer(many=True, required=False)


@extend_schema_serializer(
    examples=[
        OpenApiExample("Minimal flow", value=examples.MINIMAL_FLOW, request_only=True),
        OpenApiExample("Minimal flow", value=examples.FLOW_RESPONSE, response_only=True),
    ]
)
class FlowSerializer(AsWrittenSerializer):
    """A flow in flow-file shape, plus its current version and timestamps."""

    slug = serializers.RegexField(
        KEY_PATTERN,
        required=False,
        help_text="Stable identifier; required to create a flow. The URL's slug wins on update.",
    )
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True)
    run_timeout_s = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="Fail a run still active after this many seconds.",
    )
    queue = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=100,
        help_text="Celery queue of the flow's tasks (empty: the default queue).",
    )
    priority = serializers.IntegerField(
        required=False,
        min_value=-1000,
        max_value=1000,
        help_text="Runs waiting for a slot start highest priority first.",
    )
    max_active_runs = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="Runs of the flow executing at once, whatever started them (none: no limit).",
    )
    nodes = FlowNodeSerializer(many=True)
    edges = FlowEdgeSerializer(many=True, required=False)
    schedules = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text="Schedules kept in sync with the flow, when the scheduling app is installed.",
    )
    triggers = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text="Webhook, after-flow and file triggers kept in sync with the flow "
        "(docs/triggers.md); a webhook's secret is never part of it.",
    )
    alerts = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text='Alerts: [{"on": ["failed", "late", "recovered"], "connection": "ops-webhook", '
        '"email": ["ops@example.com"], "late_after": "30m"}] (docs/operations.md#alerts).',
    )
    version = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="Number of the flow's current version. Send it back on update to refuse the "
        "write (409) if the graph has changed since; `If-Match` with the `ETag` guards the "
        "whole flow (412).",
    )
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Flow",
            value={
                "slug": "paid-orders-to-crm",
                "name": "Paid orders to CRM",
                "description": "Every paid order with a positive amount, reshaped for the CRM.",
                "version": 3,
                "node_count": 4,
                "created_at": "2026-01-05T09:30:00Z",
                "updated_at": "2026-01-09T16:02:00Z",
            },
            response_only=True,
        )
    ]
)
class FlowSummarySerializer(serializers.Serializer):
    """A flow in a list: the graph is left out (``GET /flows/{slug}/`` has it)."""

    slug = serializers.SlugField()
    name = serializers.CharField()
    description = serializers.CharField()
    version = serializers.IntegerField(
        source="current_version", allow_null=True, help_text="Current version number."
    )
    node_count = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ValidationResultSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    errors = ErrorItemSerializer(many=True, help_text="Every problem found; empty when valid.")


@extend_schema_serializer(
    examples=[OpenApiExample("Version", value=examples.VERSION, response_only=True)]
)
class FlowVersionSerializer(serializers.ModelSerializer):
    definition = FlowGraphSerializer(
        help_text="The graph as it runs: every edge's ports made explicit."
    )
    author = serializers.CharField(
        source="author_name",
        read_only=True,
        help_text="Who made this version (user name; the OS user on the command line; "
        "empty when made by a schedule or the system).",
    )

    class Meta:
        model = FlowVersion
        fields = ["number", "checksum", "created_at", "author", "definition"]


class NodeRunSerializer(serializers.ModelSerializer):
    counts = serializers.SerializerMethodField(
        help_text="What `rows_in` and `rows_out` count for this node type: "
        '`{"rows_in": "rows in", "rows_out": "rows out"}`, or for `http_post` '
        '`{"rows_in": "records sent", "rows_out": "requests"}`.'
    )

    @extend_schema_field(
        {
            "type": "object",
            "properties": {"rows_in": {"type": "string"}, "rows_out": {"type": "string"}},
            "required": ["rows_in", "rows_out"],
        }
    )
    def get_counts(self, node: NodeRun) -> dict[str, str]:
        rows_in, rows_out = count_labels(node.node_type)
        return {"rows_in": rows_in, "rows_out": rows_out}

    rows_out_by_port = serializers.SerializerMethodField(
        help_text='Records out of each output port: `{"paid": 120, "refunded": 4, "else": 0}` '
        "for a `branch` (one port per route); for a node with one output port, `rows_out` on "
        'it (`{"out": 3000}`).'
    )

    @extend_schema_field(
        {"type": "object", "additionalProperties": {"type": "integer", "format": "int64"}}
    )
    def get_rows_out_by_port(self, node: NodeRun) -> dict[str, int]:
        return rows_by_port(node.node_type, node.rows_out, node.rows_by_port)

    partitions = serializers.SerializerMethodField(
        help_text="For a node run partition by partition (a partitioned source and the stretch "
        "of nodes after it), each partition in order: its status, attempts, this node's rows in "
        "and out within it, timings and error. Empty for a node run executed whole."
    )

    @extend_schema_field(
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "partition": {"type": "integer"},
                    "status": {"type": "string", "enum": [s.value for s in NodeStatus]},
                    "attempts": {"type": "integer"},
                    "workers_lost": {"type": "integer"},
                    "rows_in": {"type": "integer", "format": "int64"},
                    "rows_out": {"type": "integer", "format": "int64"},
                    "started_at": {"type": "string", "format": "date-time", "nullable": True},
                    "finished_at": {"type": "string", "format": "date-time", "nullable": True},
                    "duration_ms": {"type": "integer", "format": "int64", "nullable": True},
                    "error": {"type": "string"},
                },
                "required": ["partition", "status", "attempts", "rows_in", "rows_out", "error"],
            },
        }
    )
    def get_partitions(self, node: NodeRun) -> list[dict[str, Any]]:
        return node.partition_summaries()

    class Meta:
        model = NodeRun
        fields = [
            "node_key",
            "node_type",
            "status",
            "attempts",
            "deliveries",
            "rows_in",
            "rows_out",
            "rows_out_by_port",
            "counts",
            "started_at",
            "finished_at",
            "heartbeat_at",
            "duration_ms",
            "error",
            "traceback",
            "partitions",
        ]


@extend_schema_serializer(examples=[OpenApiExample("Run", value=examples.RUN, response_only=True)])
class RunSerializer(serializers.ModelSerializer):
    flow = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)
    duration_s = serializers.FloatField(read_only=True, allow_null=True)
    trace_url = serializers.CharField(
        read_only=True,
        help_text="A link to the run's trace when FLOWPLATFORM_TRACE_URL_TEMPLATE is set, else empty.",
    )

    class Meta:
        model = FlowRun
        fields = [
            "id",
            "flow",
            "version",
            "status",
            "trigger",
            "params",
            "interval_start",
            "interval_end",
            "created_at",
            "started_at",
            "finished_at",
            "duration_s",
            "error",
            "trace_id",
            "trace_url",
        ]
        read_only_fields = fields


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Run with its nodes",
            value=examples.RUN_DETAIL,
            response_only=True,
            status_codes=["200", "202"],
        )
    ]
)
class RunDetailSerializer(RunSerializer):
    node_runs = NodeRunSerializer(many=True, read_only=True)
    alerts = serializers.SerializerMethodField(
        help_text="Alerts sent about this run: event, target, status, attempts, last error."
    )

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "node_runs", "alerts"]
        read_only_fields = fields

    @extend_schema_field(
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "event": {"type": "string"},
                    "target": {"type": "string"},
                    "status": {"type": "string"},
                    "attempts": {"type": "integer"},
                    "error": {"type": "string"},
                    "created_at": {"type": "string", "format": "date-time"},
                    "sent_at": {"type": "string", "format": "date-time", "nullable": True},
                },
            },
        }
    )
    def get_alerts(self, run: FlowRun) -> list[dict[str, Any]]:
        return list(run_details(run).get("alerts", []))


@extend_schema_serializer(
    examples=[
        OpenApiExample("Params", value={"params": {"min_id": 1000}}, request_only=True),
        OpenApiExample(
            "Data interval",
            value={
                "params": {},
                "interval_start": "2026-01-04T00:00:00Z",
                "interval_end": "2026-01-05T00:00:00Z",
            },
            request_only=True,
        ),
    ]
)
class StartRunSerializer(StrictSerializer):
    params = serializers.DictField(
        required=False,
        default=dict,
        help_text="Run values, bound to `%(name)s` in queries; they win over node params.",
    )
    interval_start = serializers.DateTimeField(required=False, allow_null=True, default=None)
    interval_end = serializers.DateTimeField(required=False, allow_null=True, default=None)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs.get("interval_start"), attrs.get("interval_end")
        if (start is None) != (end is None):
            raise serializers.ValidationError(
                {"interval_end" if end is None else "interval_start": "give both ends or neither"}
            )
        if start is not None and end is not None and end < start:
            raise serializers.ValidationError({"interval_end": "must not be before interval_start"})
        return attrs


@extend_schema_serializer(
    examples=[
        OpenApiExample("Same version", value={"latest": False}, request_only=True),
        OpenApiExample("Latest version", value={"latest": True}, request_only=True),
        OpenApiExample("From a node", value={"from_node": "shape"}, request_only=True),
    ]
)
class RerunSerializer(StrictSerializer):
    latest = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Run the flow's latest version instead of the version the run used.",
    )
    from_node = serializers.RegexField(
        KEY_PATTERN,
        required=False,
        default=None,
        allow_null=True,
        help_text="Run this node and its descendants again, reusing the other nodes' outputs "
        "(default: the first failed node, or the whole flow when none failed).",
    )


class PreviewSerializer(StrictSerializer):
    """What to preview: a node of the flow, how many records, with which run values."""

    node = serializers.RegexField(KEY_PATTERN, help_text="Key of the node to preview.")
    limit = serializers.IntegerField(
        required=False,
        default=50,
        min_value=1,
        max_value=1000,
        help_text="Most records each source reads and each node shows.",
    )
    params = serializers.DictField(
        required=False,
        default=dict,
        help_text="Run values, bound to `%(name)s` in queries, as a run's params are.",
    )


class UnsavedPreviewSerializer(PreviewSerializer):
    """A preview of a flow document that need not be saved (the designer's current graph)."""

    flow = serializers.DictField(help_text="The flow file, as `POST /flows/` takes it.")


class PreviewNodeSerializer(serializers.Serializer):
    key = serializers.CharField()
    type = serializers.CharField()
    status = serializers.ChoiceField(
        ["ok", "dry_run", "skipped", "failed", "timed_out", "not_run"],
        help_text="`ok`: executed on the sample; `dry_run`: a node with side effects showed what "
        "it would send or write, doing nothing; `skipped`: a node with side effects and no "
        "preview, not executed; `failed`; `timed_out`; `not_run`: an upstream node gave nothing.",
    )
    message = serializers.CharField(help_text="Why it failed or was skipped; empty when `ok`.")
    inputs = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Input port -> the upstream node keys feeding it (their entries come first).",
    )
    records = serializers.ListField(
        child=serializers.DictField(), help_text="The first records the node produced."
    )
    count = serializers.IntegerField(help_text="Records produced on the sample (at most `limit`).")
    limit_reached = serializers.BooleanField(help_text="The node produced `limit` records.")
    cut_for_size = serializers.BooleanField(
        help_text="Records were left out of `records` to keep the answer within its size bound."
    )
    schema = serializers.DictField(
        child=serializers.CharField(),
        allow_null=True,
        help_text="The declared output schema (field -> type); null when unknown statically.",
    )
    sample_schema = serializers.DictField(
        child=serializers.CharField(),
        allow_null=True,
        help_text="The fields seen in the records and their types.",
    )


class PreviewResultSerializer(serializers.Serializer):
    node = serializers.CharField()
    limit = serializers.IntegerField()
    timed_out = serializers.BooleanField(help_text="The preview's time bound was reached.")
    elapsed_ms = serializers.IntegerField()
    nodes = PreviewNodeSerializer(
        many=True, help_text="The node and every node upstream of it, in the order they ran."
    )
