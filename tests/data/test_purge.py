"""``purgerundata``: old runs' flow data goes, active runs' data and reused outputs stay."""

from __future__ import annotations

import uuid
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from flows.engine.handoff import flow_data_storage, output_name, write_batches
from flows.flowfile import apply_flow_file
from flows.models import FlowRun, NodeRun
from flows.versions import ensure_current_version

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("example_connections")]


@pytest.fixture(autouse=True)
def own_storage(settings: Any, tmp_path: Any) -> None:
    """A flow-data folder of this test's own: other tests' leftovers are not ours to count."""
    settings.STORAGES = {
        **settings.STORAGES,
        "flowdata": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "flowdata"), "allow_overwrite": True},
        },
    }


def make_run(flow: Any, status: str, age: timedelta) -> FlowRun:
    at = timezone.now() - age
    run = FlowRun.objects.create(
        flow=flow, version=ensure_current_version(flow), trigger="api", status=status
    )
    finished = at if status in ("succeeded", "failed", "cancelled") else None
    FlowRun.objects.filter(pk=run.pk).update(created_at=at, finished_at=finished)
    write_batches(output_name(str(run.id), "orders"), [[{"id": 1}]])
    return run


def has_data(run_id: Any) -> bool:
    return flow_data_storage().exists(output_name(str(run_id), "orders"))


def test_purge_removes_old_finished_runs_and_keeps_active_and_reused_data(
    minimal_flow: dict[str, Any],
) -> None:
    flow, _ = apply_flow_file(minimal_flow)
    old = make_run(flow, "succeeded", timedelta(days=8))
    old_failed = make_run(flow, "failed", timedelta(days=30))
    recent = make_run(flow, "succeeded", timedelta(days=2))
    active = make_run(flow, "running", timedelta(days=9))
    queued = make_run(flow, "queued", timedelta(days=9))
    reused = make_run(flow, "succeeded", timedelta(days=10))
    NodeRun.objects.create(
        run=recent,
        node_key="orders",
        node_type="sql_query",
        status="succeeded",
        output_ref=output_name(str(reused.id), "orders"),
        reused_from=reused,
    )
    orphan = uuid.uuid4()
    write_batches(output_name(str(orphan), "orders"), [[{"id": 1}]])

    out = StringIO()
    call_command("purgerundata", "--older-than", "7d", "--dry-run", stdout=out)
    assert "3 runs' data would be removed (1 without a run)" in out.getvalue()
    assert has_data(old.id)

    call_command("purgerundata", "--older-than", "7d", stdout=out)
    assert "removed 3 objects of 3 runs (1 without a run record)" in out.getvalue()
    assert not has_data(old.id) and not has_data(old_failed.id) and not has_data(orphan)
    assert has_data(recent.id) and has_data(active.id) and has_data(queued.id)
    assert has_data(reused.id)  # the recent run still points at its output


def test_purge_refuses_an_age_it_cannot_read() -> None:
    with pytest.raises(CommandError, match=r"--older-than '7 days' is not an age: use a number"):
        call_command("purgerundata", "--older-than", "7 days")
