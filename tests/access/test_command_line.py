"""``--as USER`` makes ``importflow`` and ``runflow`` act with that user's rights.

Without ``--as`` the command line is the operator and may do everything (the tests of the
commands themselves cover that).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from flows.models import Flow, FlowRun


def write_file(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_importflow_as_a_viewer_changes_nothing(
    actors: dict[str, User], alpha: Flow, minimal_flow: dict[str, Any], tmp_path: Path
) -> None:
    data = {**copy.deepcopy(minimal_flow), "slug": "alpha", "name": "Renamed"}
    with pytest.raises(CommandError, match="change permission"):
        call_command("importflow", write_file(tmp_path, data), "--as", "viewer")
    alpha.refresh_from_db()
    assert alpha.name == "Alpha"


def test_importflow_as_an_editor_changes_the_flow(
    actors: dict[str, User], alpha: Flow, minimal_flow: dict[str, Any], tmp_path: Path
) -> None:
    data = {**copy.deepcopy(minimal_flow), "slug": "alpha", "name": "Renamed"}
    call_command("importflow", write_file(tmp_path, data), "--as", "editor")
    alpha.refresh_from_db()
    assert alpha.name == "Renamed"


def test_importflow_as_an_editor_cannot_add_a_schedule(
    actors: dict[str, User], alpha: Flow, minimal_flow: dict[str, Any], tmp_path: Path
) -> None:
    data = {**copy.deepcopy(minimal_flow), "slug": "alpha", "schedules": [{"every": "1h"}]}
    with pytest.raises(CommandError, match="run"):
        call_command("importflow", write_file(tmp_path, data), "--as", "editor")
    assert not alpha.schedules.exists()


@pytest.mark.parametrize("actor", ["viewer", "editor", "nobody"])
def test_runflow_as_a_user_without_run_starts_nothing(
    actors: dict[str, User], alpha: Flow, actor: str
) -> None:
    with pytest.raises(CommandError, match="run"):
        call_command("runflow", "alpha", "--as", actor)
    assert not FlowRun.objects.exists()


def test_runflow_as_a_runner_starts_a_run(
    actors: dict[str, User], alpha: Flow, eager: None
) -> None:
    call_command("runflow", "alpha", "--as", "runner")
    assert FlowRun.objects.filter(flow=alpha).count() == 1
