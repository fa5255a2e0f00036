"""Every action leaves an entry, whichever door it came through: the admin, the API, the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from flows.models import Flow, FlowRun, RunStatus
from flows.services import start_run
from nodes.models import Connection
from scheduling.models import FlowSchedule
from tests.admin.forms import flow_post_data, page_post_data
from tests.audit.conftest import SECRET_HEADER, SECRET_URL, SECRET_URL_2, last

pytestmark = pytest.mark.django_db


@dataclass
class Doors:
    """What an action needs: the three doors and the objects to act on."""

    admin: Client
    api: APIClient
    flow: Flow
    flow_file: dict[str, Any]
    tmp_path: Path

    def file(self, data: dict[str, Any]) -> str:
        path = self.tmp_path / f"{data['slug']}-{len(list(self.tmp_path.iterdir()))}.json"
        path.write_text(json.dumps(data))
        return str(path)

    def cli(self, *args: str) -> None:
        call_command(*args, "--as", "root", stdout=_Null(), stderr=_Null())

    def finished_run(self) -> FlowRun:
        run = start_run(self.flow)
        FlowRun.objects.filter(pk=run.pk).update(status=RunStatus.FAILED)
        return run


class _Null:
    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


def newest_run() -> str:
    return str(FlowRun.objects.order_by("-created_at").first().pk)  # type: ignore[union-attr]


def schedule_form(flow: Flow, cron: str = "0 6 * * 1-5") -> dict[str, str]:
    return {
        "flow": str(flow.pk), "description": "", "enabled": "on", "kind": "cron", "cron": cron,
        "timezone": "UTC", "every_seconds": "", "at_0": "", "at_1": "", "params": "{}",
        "overlap": "skip", "max_active_runs": "1", "start_at_0": "", "start_at_1": "",
        "end_at_0": "", "end_at_1": "",
    }  # fmt: skip


def a_schedule(flow: Flow) -> FlowSchedule:
    schedule = FlowSchedule(flow=flow, kind="cron", cron="0 5 * * *")
    schedule.save()
    return schedule


def a_connection() -> Connection:
    connection = Connection(name="ledger")
    connection.set_url(SECRET_URL)
    connection.save()
    return connection


def ok(response: Any, *codes: int) -> Any:
    assert response.status_code in codes, response.content.decode()[:2000]
    return response


# -- the admin ---------------------------------------------------------------------------------
def admin_flow_create(d: Doors) -> str:
    data = {**d.flow_file, "slug": "fresh"}
    ok(d.admin.post(reverse("admin:flows_flow_add"), flow_post_data(data)), 302)
    return str(Flow.objects.get(slug="fresh").pk)


def admin_flow_change(d: Doors) -> str:
    url = reverse("admin:flows_flow_change", args=[d.flow.pk])
    data = page_post_data(d.admin.get(url))
    data["name"] = "Renamed"
    ok(d.admin.post(url, data), 302)
    return str(d.flow.pk)


def admin_flow_delete(d: Doors) -> str:
    url = reverse("admin:flows_flow_delete", args=[d.flow.pk])
    ok(d.admin.post(url, {"post": "yes"}), 302)
    return str(d.flow.pk)


def admin_run(d: Doors) -> str:
    ok(d.admin.post(reverse("admin:flows_flow_run", args=[d.flow.pk]), {"params": "{}"}), 302)
    return newest_run()


def admin_cancel(d: Doors) -> str:
    run = start_run(d.flow)
    ok(d.admin.post(reverse("admin:flows_flowrun_cancel", args=[run.pk])), 302)
    return str(run.pk)


def admin_rerun(d: Doors) -> str:
    run = d.finished_run()
    ok(d.admin.post(reverse("admin:flows_flowrun_rerun", args=[run.pk]), {"from_node": ""}), 302)
    return newest_run()


def admin_connection_create(d: Doors) -> str:
    body = {"name": "ledger", "description": "", "url": SECRET_URL, "headers": ""}
    ok(d.admin.post(reverse("admin:nodes_connection_add"), body), 302)
    return str(Connection.objects.get(name="ledger").pk)


def admin_connection_change(d: Doors) -> str:
    connection = a_connection()
    body = {"name": "ledger", "description": "", "url": SECRET_URL_2, "headers": ""}
    ok(d.admin.post(reverse("admin:nodes_connection_change", args=[connection.pk]), body), 302)
    return str(connection.pk)


def admin_connection_delete(d: Doors) -> str:
    connection = a_connection()
    url = reverse("admin:nodes_connection_delete", args=[connection.pk])
    ok(d.admin.post(url, {"post": "yes"}), 302)
    return str(connection.pk)


def admin_schedule_create(d: Doors) -> str:
    ok(d.admin.post(reverse("admin:scheduling_flowschedule_add"), schedule_form(d.flow)), 302)
    return str(FlowSchedule.objects.get().pk)


def admin_schedule_change(d: Doors) -> str:
    schedule = a_schedule(d.flow)
    url = reverse("admin:scheduling_flowschedule_change", args=[schedule.pk])
    ok(d.admin.post(url, schedule_form(d.flow, cron="0 7 * * *")), 302)
    return str(schedule.pk)


def admin_schedule_delete(d: Doors) -> str:
    schedule = a_schedule(d.flow)
    url = reverse("admin:scheduling_flowschedule_delete", args=[schedule.pk])
    ok(d.admin.post(url, {"post": "yes"}), 302)
    return str(schedule.pk)


def admin_token_create(d: Doors) -> str:
    bob = User.objects.create_user("bob")
    ok(d.admin.post(reverse("admin:authtoken_tokenproxy_add"), {"user": bob.pk}), 302)
    return str(bob.pk)


def admin_token_delete(d: Doors) -> str:
    bob = User.objects.create_user("bob")
    Token.objects.create(user=bob)
    url = reverse("admin:authtoken_tokenproxy_delete", args=[bob.pk])
    ok(d.admin.post(url, {"post": "yes"}), 302)
    return str(bob.pk)


# -- the API -----------------------------------------------------------------------------------
def api_flow_create(d: Doors) -> str:
    ok(d.api.post("/api/v1/flows/", {**d.flow_file, "slug": "fresh"}, format="json"), 201)
    return str(Flow.objects.get(slug="fresh").pk)


def api_flow_change(d: Doors) -> str:
    url = f"/api/v1/flows/{d.flow.slug}/"
    ok(d.api.patch(url, {"name": "Renamed"}, format="json"), 200)
    return str(d.flow.pk)


def api_flow_delete(d: Doors) -> str:
    ok(d.api.delete(f"/api/v1/flows/{d.flow.slug}/"), 204)
    return str(d.flow.pk)


def api_run(d: Doors) -> str:
    return ok(d.api.post(f"/api/v1/flows/{d.flow.slug}/runs/", {}, format="json"), 202).json()["id"]


def api_cancel(d: Doors) -> str:
    run = start_run(d.flow)
    ok(d.api.post(f"/api/v1/runs/{run.pk}/cancel/", {}, format="json"), 200, 202)
    return str(run.pk)


def api_rerun(d: Doors) -> str:
    run = d.finished_run()
    return ok(d.api.post(f"/api/v1/runs/{run.pk}/rerun/", {}, format="json"), 202).json()["id"]


def api_connection_create(d: Doors) -> str:
    body = {"name": "ledger", "url": SECRET_URL, "headers": {"Authorization": SECRET_HEADER}}
    ok(d.api.post("/api/v1/connections/", body, format="json"), 201)
    return str(Connection.objects.get(name="ledger").pk)


def api_connection_change(d: Doors) -> str:
    connection = a_connection()
    ok(d.api.patch("/api/v1/connections/ledger/", {"url": SECRET_URL_2}, format="json"), 200)
    return str(connection.pk)


def api_connection_delete(d: Doors) -> str:
    connection = a_connection()
    ok(d.api.delete("/api/v1/connections/ledger/"), 204)
    return str(connection.pk)


def api_schedule_create(d: Doors) -> str:
    body = {"flow": d.flow.slug, "cron": "0 6 * * *"}
    return str(ok(d.api.post("/api/v1/schedules/", body, format="json"), 201).json()["id"])


def api_schedule_change(d: Doors) -> str:
    schedule = a_schedule(d.flow)
    url = f"/api/v1/schedules/{schedule.pk}/"
    ok(d.api.patch(url, {"enabled": False}, format="json"), 200)
    return str(schedule.pk)


def api_schedule_delete(d: Doors) -> str:
    schedule = a_schedule(d.flow)
    ok(d.api.delete(f"/api/v1/schedules/{schedule.pk}/"), 204)
    return str(schedule.pk)


# -- the command line --------------------------------------------------------------------------
def cli_flow_create(d: Doors) -> str:
    d.cli("importflow", d.file({**d.flow_file, "slug": "fresh"}))
    return str(Flow.objects.get(slug="fresh").pk)


def cli_flow_change(d: Doors) -> str:
    d.cli("importflow", d.file({**d.flow_file, "name": "Renamed"}))
    return str(d.flow.pk)


def cli_run(d: Doors) -> str:
    d.cli("runflow", d.flow.slug)
    return newest_run()


def cli_rerun(d: Doors) -> str:
    run = d.finished_run()
    d.cli("runflow", d.flow.slug, "--rerun", str(run.pk))
    return newest_run()


def cli_connection_create(d: Doors) -> str:
    d.cli("addconnection", "ledger", SECRET_URL, "--header", f"Authorization={SECRET_HEADER}")
    return str(Connection.objects.get(name="ledger").pk)


def cli_connection_change(d: Doors) -> str:
    connection = a_connection()
    d.cli("addconnection", "ledger", SECRET_URL_2)
    return str(connection.pk)


def cli_schedule_create(d: Doors) -> str:
    d.cli("importflow", d.file({**d.flow_file, "schedules": [{"cron": "0 6 * * *"}]}))
    return str(FlowSchedule.objects.get().pk)


def cli_schedule_delete(d: Doors) -> str:
    schedule = a_schedule(d.flow)
    d.cli("importflow", d.file({**d.flow_file, "schedules": []}))
    return str(schedule.pk)


def cli_token_create(d: Doors) -> str:
    bob = User.objects.create_user("bob")
    d.cli("createapitoken", "bob")
    return str(bob.pk)


def cli_token_delete(d: Doors) -> str:
    bob = User.objects.create_user("bob")
    Token.objects.create(user=bob)
    d.cli("createapitoken", "bob")  # replaces (deletes) the previous token
    return str(bob.pk)


FLOW, RUN, CONNECTION = "flows.flow", "flows.flowrun", "nodes.connection"
SCHEDULE, TOKEN = "scheduling.flowschedule", "authtoken.token"

CASES: list[tuple[str, str, str, Callable[[Doors], str]]] = [
    ("admin", "create", FLOW, admin_flow_create),
    ("admin", "change", FLOW, admin_flow_change),
    ("admin", "delete", FLOW, admin_flow_delete),
    ("admin", "run", RUN, admin_run),
    ("admin", "cancel", RUN, admin_cancel),
    ("admin", "rerun", RUN, admin_rerun),
    ("admin", "create", CONNECTION, admin_connection_create),
    ("admin", "change", CONNECTION, admin_connection_change),
    ("admin", "delete", CONNECTION, admin_connection_delete),
    ("admin", "create", SCHEDULE, admin_schedule_create),
    ("admin", "change", SCHEDULE, admin_schedule_change),
    ("admin", "delete", SCHEDULE, admin_schedule_delete),
    ("admin", "create", TOKEN, admin_token_create),
    ("admin", "delete", TOKEN, admin_token_delete),
    ("api", "create", FLOW, api_flow_create),
    ("api", "change", FLOW, api_flow_change),
    ("api", "delete", FLOW, api_flow_delete),
    ("api", "run", RUN, api_run),
    ("api", "cancel", RUN, api_cancel),
    ("api", "rerun", RUN, api_rerun),
    ("api", "create", CONNECTION, api_connection_create),
    ("api", "change", CONNECTION, api_connection_change),
    ("api", "delete", CONNECTION, api_connection_delete),
    ("api", "create", SCHEDULE, api_schedule_create),
    ("api", "change", SCHEDULE, api_schedule_change),
    ("api", "delete", SCHEDULE, api_schedule_delete),
    ("cli", "create", FLOW, cli_flow_create),
    ("cli", "change", FLOW, cli_flow_change),
    ("cli", "run", RUN, cli_run),
    ("cli", "rerun", RUN, cli_rerun),
    ("cli", "create", CONNECTION, cli_connection_create),
    ("cli", "change", CONNECTION, cli_connection_change),
    ("cli", "create", SCHEDULE, cli_schedule_create),
    ("cli", "delete", SCHEDULE, cli_schedule_delete),
    ("cli", "create", TOKEN, cli_token_create),
    ("cli", "delete", TOKEN, cli_token_delete),
]
ADDRESSES = {"admin": "10.1.2.3", "api": "10.4.5.6", "cli": None}


@pytest.mark.parametrize(
    ("source", "action", "object_type", "act"),
    CASES,
    ids=[f"{source}-{action}-{kind}" for source, action, kind, _ in CASES],
)
def test_every_action_is_recorded_with_its_actor_and_door(
    source: str,
    action: str,
    object_type: str,
    act: Callable[[Doors], str],
    admin_web: Client,
    api: APIClient,
    root: User,
    paid_orders: Flow,
    minimal_flow: dict[str, Any],
    tmp_path: Path,
) -> None:
    object_id = act(Doors(admin_web, api, paid_orders, minimal_flow, tmp_path))
    entry = last(action, object_type)
    assert (entry.source, entry.object_id) == (source, object_id)
    assert (entry.actor, entry.actor_name) == (root, "root")
    assert entry.remote_addr == ADDRESSES[source]
    if source == "cli":
        assert "os_user" in entry.details
