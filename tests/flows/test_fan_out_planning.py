"""Which nodes a partitioned source runs partition by partition, and what a redelivery of
them does."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from flows.definition import FlowSpec
from flows.engine.partitions import in_partitioned_stretch
from flows.models import NodeRun
from flows.versions import resolved_definition
from tests.flows.helpers import queued_run

pytestmark = [
    pytest.mark.usefixtures("transactional_db", "example_connections"),
    pytest.mark.embedded,
]


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
    NodeRun.objects.filter(run=run, node_key="orders").update(partitioned=True)
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
    NodeRun.objects.filter(pk=source.pk).update(partitioned=True)
    assert _inside_fan_out(source.pk)  # its partitions own it now
    assert _inside_fan_out(NodeRun.objects.get(run=run, node_key="paid").pk)
