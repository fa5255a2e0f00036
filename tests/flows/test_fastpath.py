"""The node task's bookkeeping statements (``flows.engine.fastpath``) on a real PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from flows.definition import FlowSpec
from flows.engine import fastpath
from flows.engine.lease import is_executing
from flows.engine.partitions import in_partitioned_stretch
from flows.flowfile import apply_flow_file
from flows.models import FlowRun, NodeRun
from flows.services import cancel_run
from flows.versions import ensure_current_version, resolved_definition

pytestmark = pytest.mark.usefixtures("transactional_db", "example_connections")


def queued_run(minimal_flow: dict[str, Any]) -> FlowRun:
    """A run recorded but never dispatched, so that the statements can be driven by hand."""
    flow, _created = apply_flow_file(minimal_flow)
    version = ensure_current_version(flow)
    run = FlowRun.objects.create(flow=flow, version=version, trigger="api")
    NodeRun.objects.bulk_create(
        NodeRun(run=run, node_key=node["key"], node_type=node["type"], position=index)
        for index, node in enumerate(version.definition["nodes"])
    )
    return run


def test_take_claims_a_pending_node_starts_the_run_and_holds_the_lease(
    minimal_flow: dict[str, Any],
) -> None:
    run = queued_run(minimal_flow)
    taken = fastpath.take_node(str(run.id), "orders")
    assert taken is not None and taken.lease is not None and taken.claim is not None
    try:
        node = NodeRun.objects.get(run=run, node_key="orders")
        assert (node.status, node.attempts, node.deliveries) == ("running", 1, 1)
        assert FlowRun.objects.get(id=run.id).status == "running"
        assert is_executing(node.pk)
        assert fastpath.take_node(str(run.id), "orders").lease is None  # not twice at once
    finally:
        done, closed = fastpath.finish_succeeded(
            taken.claim.node_run, taken.lease, rows_in=0, rows_out=3, output_ref="x", close=True
        )
    assert (done, closed) == (True, False)  # the other nodes have not run
    assert not is_executing(node.pk)
    assert NodeRun.objects.get(pk=node.pk).status == "succeeded"
    assert FlowRun.objects.get(id=run.id).status == "running"


def test_the_last_node_closes_the_run_only_when_every_node_succeeded(
    minimal_flow: dict[str, Any],
) -> None:
    run = queued_run(minimal_flow)
    NodeRun.objects.filter(run=run).exclude(node_key="push").update(status="succeeded")
    taken = fastpath.take_node(str(run.id), "push")
    assert taken is not None and taken.claim is not None and taken.lease is not None
    assert set(taken.claim.outputs or {}) == {"orders", "paid", "shape"}
    done, closed = fastpath.finish_succeeded(
        taken.claim.node_run, taken.lease, rows_in=1, rows_out=1, output_ref="y", close=True
    )
    assert (done, closed) == (True, True)
    assert FlowRun.objects.get(id=run.id).status == "succeeded"


def test_a_failed_finish_releases_the_lease(
    minimal_flow: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = queued_run(minimal_flow)
    taken = fastpath.take_node(str(run.id), "orders")
    assert taken is not None and taken.claim is not None and taken.lease is not None

    def broken(*_args: Any) -> Any:
        raise TimeoutError("soft time limit")

    monkeypatch.setattr(fastpath, "run_on_session", broken)
    with pytest.raises(TimeoutError):
        fastpath.finish_succeeded(
            taken.claim.node_run, taken.lease, rows_in=0, rows_out=0, output_ref="", close=False
        )
    assert not is_executing(taken.node_run_id)


def test_nothing_is_claimed_in_a_cancelled_run(minimal_flow: dict[str, Any]) -> None:
    run = queued_run(minimal_flow)
    cancel_run(run)
    taken = fastpath.take_node(str(run.id), "orders")
    assert taken is not None
    assert (taken.status, taken.lease, taken.claim) == ("skipped", None, None)
    assert NodeRun.objects.get(run=run, node_key="orders").attempts == 0


def test_only_the_stretch_after_a_partitioned_source_is_run_by_partitions(
    minimal_flow: dict[str, Any],
) -> None:
    flow = dict(minimal_flow, nodes=[dict(n) for n in minimal_flow["nodes"]])
    flow["nodes"][0] = dict(flow["nodes"][0], config={**flow["nodes"][0]["config"]})
    flow["nodes"][0]["config"]["partition_rows"] = 10
    definition = resolved_definition(FlowSpec.model_validate(flow))
    run_id = str(uuid.uuid4())
    assert [
        k
        for k in ("orders", "paid", "shape", "push")
        if in_partitioned_stretch(definition, k, run_id)
    ] == [
        "paid",
        "shape",
        "push",
    ]
    flow["nodes"][1] = dict(flow["nodes"][1], type="dummy_audit", config={})
    definition = resolved_definition(FlowSpec.model_validate(flow))
    # The node after the source is not partitionable: nothing runs by partitions.
    assert not any(in_partitioned_stretch(definition, k, run_id) for k in ("paid", "shape", "push"))


def test_the_stretch_after_an_automatic_source_is_run_by_partitions_once_it_fanned_out(
    minimal_flow: dict[str, Any],
) -> None:
    from flows.engine.tasks import _inside_fan_out

    run = queued_run(minimal_flow)  # sql_query without partition_rows: decided by the run
    paid = NodeRun.objects.get(run=run, node_key="paid")
    NodeRun.objects.filter(pk=paid.pk).update(status="running")
    # Read whole (a small source): a redelivery of a node whose worker died takes it over.
    assert not _inside_fan_out(paid.pk)
    NodeRun.objects.filter(run=run, node_key="orders").update(checkpoint={"fanned_out": True})
    assert _inside_fan_out(paid.pk)  # partitioned: the partitions own it


def test_a_partitioned_source_that_has_fanned_out_is_not_run_again_by_a_redelivery(
    minimal_flow: dict[str, Any],
) -> None:
    from flows.engine.tasks import _inside_fan_out

    flow = {**minimal_flow, "nodes": [dict(n) for n in minimal_flow["nodes"]]}
    flow["nodes"][0]["config"] = {**flow["nodes"][0]["config"], "partition_rows": 10}
    run = queued_run(flow)
    source = NodeRun.objects.get(run=run, node_key="orders")
    NodeRun.objects.filter(pk=source.pk).update(status="running")
    assert not _inside_fan_out(source.pk)  # its worker died before fanning out: take it over
    NodeRun.objects.filter(pk=source.pk).update(checkpoint={"fanned_out": True})
    assert _inside_fan_out(source.pk)  # its partitions own it now
    assert _inside_fan_out(NodeRun.objects.get(run=run, node_key="paid").pk)


def test_partition_progress_adds_to_every_running_node_in_one_statement(
    minimal_flow: dict[str, Any],
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from flows import transitions

    run = queued_run(minimal_flow)
    NodeRun.objects.filter(run=run).update(status="running", rows_in=5, rows_out=1)
    NodeRun.objects.filter(run=run, node_key="push").update(status="succeeded")
    ids = dict(NodeRun.objects.filter(run=run).values_list("node_key", "pk"))
    deltas = {ids["orders"]: (0, 100), ids["paid"]: (100, 30), ids["push"]: (30, 1)}
    with CaptureQueriesContext(connection) as queries:
        assert transitions.add_rows(deltas) == 2  # a finished node keeps its final figures
    assert len(queries) == 1
    rows = {n.node_key: (n.rows_in, n.rows_out) for n in NodeRun.objects.filter(run=run)}
    assert rows == {"orders": (5, 101), "paid": (105, 31), "shape": (5, 1), "push": (5, 1)}
