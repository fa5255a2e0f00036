"""``start_run`` records the run, its node runs and the audit entry of its start together: one
statement on PostgreSQL (one transaction on SQLite)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from flowplatform.audit.models import Action, AuditEntry
from flows.flowfile import apply_flow_file
from flows.models import FlowRun, NodeRun
from flows.services import start_run

pytestmark = [
    pytest.mark.usefixtures("transactional_db", "example_connections"),
    pytest.mark.embedded,
]


def test_a_run_its_node_runs_and_its_audit_entry_are_recorded_in_one_statement(
    minimal_flow: dict[str, Any],
) -> None:
    flow, _ = apply_flow_file(minimal_flow)
    with transaction.atomic():  # rolled back: nothing is dispatched
        start_run(flow)  # (the flow's version resolved and remembered)
        with CaptureQueriesContext(connection) as started:
            run = start_run(flow, params={"day": "2026-01-02"})
        entry = AuditEntry.objects.get(action=Action.RUN, object_id=str(run.id))
        assert entry.object_type == "flows.flowrun"
        assert entry.details["flow"] == flow.slug and entry.details["trigger"] == "api"
        assert FlowRun.objects.get(id=run.id).params == {"day": "2026-01-02"}
        assert NodeRun.objects.filter(run=run).count() == len(minimal_flow["nodes"])
        transaction.set_rollback(True)
    inserts = [q["sql"] for q in started if "INSERT" in q["sql"]]
    if connection.vendor == "postgresql":
        # the graph's state, then run + audit entry + node runs
        assert len(started) == 2 and len(inserts) == 1
        assert inserts[0].count("INSERT INTO") == 3
    else:
        assert len(inserts) == 3


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_the_start_statement_is_converted_for_postgresql_once_per_process(
    minimal_flow: dict[str, Any],
) -> None:
    # (longer than psycopg remembers by itself: 4096 characters, 50 parameters)
    from flows.dialect import _converted

    flow, _ = apply_flow_file(minimal_flow)
    with transaction.atomic():  # rolled back: nothing is dispatched
        start_run(flow)  # (the flow's version resolved, the statement converted)
        before = _converted.cache_info()
        runs = [start_run(flow, params={"day": day}) for day in ("2026-01-02", "2026-01-03")]
        after = _converted.cache_info()
        # each start's own values, bound to the remembered statement
        for run, day in zip(runs, ("2026-01-02", "2026-01-03"), strict=True):
            assert FlowRun.objects.get(id=run.id).params == {"day": day}
            assert NodeRun.objects.filter(run=run).count() == len(minimal_flow["nodes"])
            assert AuditEntry.objects.filter(action=Action.RUN, object_id=str(run.id)).exists()
        transaction.set_rollback(True)
    assert after.misses == before.misses
    assert after.hits >= before.hits + 2
