"""Flow files carry schedules: importflow makes them match, exportflow writes them."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django_celery_beat.models import PeriodicTask, PeriodicTasks

from flows.models import Flow
from scheduling.models import FlowSchedule

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("example_connections")]

SCHEDULES = [
    {"cron": "0 6 * * 1-5", "timezone": "Europe/Madrid"},
    {"every": "30s", "overlap": "queue", "max_active_runs": 2, "params": {"min_id": 5}},
    {"at": "2027-01-01T00:00:00Z", "enabled": False, "description": "new year"},
]


def import_file(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(data))
    out = StringIO()
    call_command("importflow", str(path), stdout=out, stderr=StringIO())
    return out.getvalue()


def export(slug: str = "paid-orders-to-crm") -> dict[str, Any]:
    out = StringIO()
    call_command("exportflow", slug, stdout=out)
    return json.loads(out.getvalue())


def schedules_of(slug: str = "paid-orders-to-crm") -> list[FlowSchedule]:
    return list(FlowSchedule.objects.filter(flow__slug=slug).order_by("position"))


def test_import_creates_schedules_and_export_writes_them_back(
    tmp_path: Path, minimal_flow: dict[str, Any]
) -> None:
    import_file(tmp_path, {**minimal_flow, "schedules": SCHEDULES})
    assert [s.summary for s in schedules_of()] == [
        "cron 0 6 * * 1-5 (Europe/Madrid)",
        "every 30s",
        "once at 2027-01-01T00:00:00+00:00",
    ]
    assert PeriodicTask.objects.filter(task="scheduling.fire").count() == 3
    assert export() == {**minimal_flow, "schedules": SCHEDULES}


def test_import_updates_in_place_creates_and_removes_to_match_the_file(
    tmp_path: Path, minimal_flow: dict[str, Any]
) -> None:
    import_file(tmp_path, {**minimal_flow, "schedules": SCHEDULES})
    cron_id = schedules_of()[0].pk
    changed = [{**SCHEDULES[0], "params": {"min_id": 9}}, {"every": "5m"}]
    import_file(tmp_path, {**minimal_flow, "schedules": changed})
    after = schedules_of()
    assert [s.pk == cron_id for s in after] == [True, False]  # same timing: same schedule
    assert after[0].params == {"min_id": 9}
    assert after[1].every_seconds == 300
    assert PeriodicTask.objects.filter(task="scheduling.fire").count() == 2


def test_a_file_without_schedules_leaves_them_alone_and_empty_list_removes_them(
    tmp_path: Path, minimal_flow: dict[str, Any]
) -> None:
    import_file(tmp_path, {**minimal_flow, "schedules": SCHEDULES})
    import_file(tmp_path, minimal_flow)
    assert len(schedules_of()) == 3
    import_file(tmp_path, {**minimal_flow, "schedules": []})
    assert schedules_of() == []
    assert "schedules" not in export()
    assert not PeriodicTask.objects.filter(task="scheduling.fire").exists()


def test_reimporting_the_same_file_does_not_wake_beat(
    tmp_path: Path, minimal_flow: dict[str, Any]
) -> None:
    import_file(tmp_path, {**minimal_flow, "schedules": SCHEDULES})
    before = PeriodicTasks.last_change()
    import_file(tmp_path, {**minimal_flow, "schedules": SCHEDULES})
    assert PeriodicTasks.last_change() == before


@pytest.mark.parametrize(
    ("schedules", "message"),
    [
        ([{"cron": "61 * * * *"}], "schedules[0].cron.minute: 61 is out of range 0-59"),
        (
            [{"cron": "0 6 * * *", "timezone": "Europe/Madird"}],
            "schedules[0].timezone: 'Europe/Madird' is not an IANA timezone",
        ),
        ([{"every": "30x"}], "schedules[0].every: '30x' is not a duration"),
        ([{"at": "2027-01-01T00:00:00"}], "schedules[0].at: Input should have timezone info"),
        (
            [{"cron": "0 6 * * *", "every": "1h"}],
            "schedules[0]: give exactly one of cron, every or at",
        ),
        (
            [{"every": "1h", "overlap": "sometimes"}],
            "schedules[0].overlap: 'sometimes' is not one of skip, queue, allow",
        ),
        ([{"every": "1h"}, {"every": "60m"}], "schedules[1]: same timing as schedules[0]"),
        ([{"every": "1h", "colour": "red"}], "schedules[0].colour: Extra inputs are not permitted"),
        ({"every": "1h"}, "schedules: Input should be a valid list"),
    ],
)
def test_bad_schedules_are_refused_with_their_path_and_change_nothing(
    tmp_path: Path, minimal_flow: dict[str, Any], schedules: Any, message: str
) -> None:
    with pytest.raises(CommandError) as caught:
        import_file(tmp_path, {**minimal_flow, "schedules": schedules})
    assert message in str(caught.value)
    assert not Flow.objects.exists() and not FlowSchedule.objects.exists()
