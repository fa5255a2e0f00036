"""Models and committed migrations never drift apart; data migrations keep the data."""

import hashlib
import json
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from flows.definition import FlowSpec
from flows.models import FlowVersion
from flows.versions import checksum, ensure_current_version, resolved_definition
from nodes.models import Connection
from tests.conftest import EXAMPLE_CONNECTIONS


@pytest.mark.django_db
def test_no_missing_migrations() -> None:
    out = StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    except SystemExit:
        pytest.fail(f"models changed without a migration:\n{out.getvalue()}")


# --- 0010 / 0005: flow configs, definitions and params keep their key order ----------------

BEFORE_KEY_ORDER = [("flows", "0009_run_trace_id"), ("scheduling", "0004_flow_triggers")]
KEY_ORDER = [("flows", "0010_keep_key_order"), ("scheduling", "0005_keep_params_key_order")]
ORDERED_COLUMNS = [
    ("flows_flownode", "config"),
    ("flows_flowversion", "definition"),
    ("scheduling_flowschedule", "params"),
    ("scheduling_flowtrigger", "params"),
]


def migrate(targets: list[tuple[str, str]]) -> Any:
    """Migrate to ``targets``; the historical apps of that state."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


def column_types() -> list[str]:
    with connection.cursor() as cursor:
        types = []
        for table, column in ORDERED_COLUMNS:
            cursor.execute(
                "select data_type from information_schema.columns"
                " where table_name = %s and column_name = %s",
                [table, column],
            )
            types.append(cursor.fetchone()[0])
    return types


def sorted_checksum(definition: dict[str, Any]) -> str:
    """How a version's checksum was made before 0010 (keys sorted)."""
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()


def forget_versions_by_id() -> None:
    """SQLite remakes a table to alter a column, and the new table's ids start again: versions
    this process remembers by id (the engine's cache, the resolver's) would match new rows."""
    from flows import versions
    from flows.engine import executor

    executor._versions.clear()
    versions._resolved.clear()


@pytest.fixture
def before_key_order(transactional_db: None) -> Iterator[Any]:
    """The schema before key order was kept; the latest one again afterwards."""
    apps = migrate(BEFORE_KEY_ORDER)
    forget_versions_by_id()
    try:
        yield apps
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
        forget_versions_by_id()


def test_key_order_migration_converts_the_rows_and_back(
    before_key_order: Any, minimal_flow: dict[str, Any]
) -> None:
    apps = before_key_order
    Flow = apps.get_model("flows", "Flow")
    FlowNode = apps.get_model("flows", "FlowNode")
    FlowEdge = apps.get_model("flows", "FlowEdge")
    OldVersion = apps.get_model("flows", "FlowVersion")
    FlowSchedule = apps.get_model("scheduling", "FlowSchedule")
    FlowTrigger = apps.get_model("scheduling", "FlowTrigger")
    for name, url in EXAMPLE_CONNECTIONS.items():
        stored = Connection(name=name)
        stored.set_url(url)
        stored.save()
    # A flow as the code before 0010 stored it: jsonb columns, a sorted-key checksum.
    flow = Flow.objects.create(slug=minimal_flow["slug"], name=minimal_flow["name"])
    nodes = {
        spec["key"]: FlowNode.objects.create(
            flow=flow, key=spec["key"], type=spec["type"], config=spec["config"], position=i
        )
        for i, spec in enumerate(minimal_flow["nodes"])
    }
    for i, edge in enumerate(minimal_flow["edges"]):
        FlowEdge.objects.create(
            flow=flow, source=nodes[edge["from"]], target=nodes[edge["to"]], position=i
        )
    definition = resolved_definition(FlowSpec.model_validate(minimal_flow))
    old = OldVersion.objects.create(
        flow=flow, number=1, definition=definition, checksum=sorted_checksum(definition)
    )
    params = {"zeta": 1, "a": 2, "middle": 3}
    FlowSchedule.objects.create(flow=flow, kind="cron", cron="0 6 * * *", params=params)
    FlowTrigger.objects.create(flow=flow, kind="webhook", name="hook", params=params)
    if connection.vendor == "postgresql":
        assert column_types() == ["jsonb"] * 4
        stored = OldVersion.objects.get().definition["nodes"][2]["config"]["mapping"]
        assert list(stored) != list(minimal_flow["nodes"][2]["config"]["mapping"])  # reordered

    migrate(KEY_ORDER)
    if connection.vendor == "postgresql":
        assert column_types() == ["json"] * 4
    version = FlowVersion.objects.get()
    assert version.definition == definition  # the same content
    assert version.checksum == checksum(version.definition)
    assert ensure_current_version(version.flow).pk == version.pk  # no new version for it
    apps = migrate(KEY_ORDER)
    assert apps.get_model("scheduling", "FlowSchedule").objects.get().params == params
    assert apps.get_model("scheduling", "FlowTrigger").objects.get().params == params
    assert (
        apps.get_model("flows", "FlowNode").objects.get(key="shape").config
        == (minimal_flow["nodes"][2]["config"])
    )

    apps = migrate(BEFORE_KEY_ORDER)
    if connection.vendor == "postgresql":
        assert column_types() == ["jsonb"] * 4
    back = apps.get_model("flows", "FlowVersion").objects.get()
    assert back.definition == definition
    assert back.checksum == old.checksum


# --- 0013: a source that fanned out before is marked partitioned -----------------------------


@pytest.fixture
def before_partition_runs(transactional_db: None) -> Iterator[Any]:
    """The schema before partitions were node runs; the latest one again afterwards."""
    apps = migrate([("flows", "0012_node_leases")])
    try:
        yield apps
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
        forget_versions_by_id()


def test_partition_runs_migration_marks_fanned_out_sources_partitioned(
    before_partition_runs: Any, minimal_flow: dict[str, Any]
) -> None:
    apps = before_partition_runs
    for name, url in EXAMPLE_CONNECTIONS.items():
        stored = Connection(name=name)
        stored.set_url(url)
        stored.save()
    run_id = queued_run_before(apps, minimal_flow)
    OldNodeRun = apps.get_model("flows", "NodeRun")
    OldNodeRun.objects.filter(run_id=run_id, node_key="orders").update(
        checkpoint={"fanned_out": True}
    )
    OldNodeRun.objects.filter(run_id=run_id, node_key="push").update(
        checkpoint={"fanned_out": True, "acked": 3}
    )
    OldNodeRun.objects.filter(run_id=run_id, node_key="paid").update(checkpoint={"acked": 1})

    apps = migrate([("flows", "0013_partition_runs")])
    shown = {
        n.node_key: (n.partitioned, n.checkpoint)
        for n in apps.get_model("flows", "NodeRun").objects.filter(run_id=run_id)
    }
    assert shown == {
        "orders": (True, None),
        "paid": (False, {"acked": 1}),
        "shape": (False, None),
        "push": (True, {"acked": 3}),
    }
    migrate([("flows", "0012_node_leases")])  # reversible (nothing to undo)


def queued_run_before(apps: Any, minimal_flow: dict[str, Any]) -> Any:
    """A run of the minimal flow recorded with the historical models; its id."""
    Flow = apps.get_model("flows", "Flow")
    FlowVersion = apps.get_model("flows", "FlowVersion")
    FlowRun = apps.get_model("flows", "FlowRun")
    NodeRun = apps.get_model("flows", "NodeRun")
    definition = resolved_definition(FlowSpec.model_validate(minimal_flow))
    flow = Flow.objects.create(slug=minimal_flow["slug"], name=minimal_flow["name"])
    version = FlowVersion.objects.create(
        flow=flow, number=1, definition=definition, checksum=checksum(definition)
    )
    run = FlowRun.objects.create(flow=flow, version=version, trigger="api")
    for index, node in enumerate(definition["nodes"]):
        NodeRun.objects.create(
            run=run, node_key=node["key"], node_type=node["type"], position=index
        )
    return run.id
