"""What an entry holds (never a secret), who may read it, and that nobody may rewrite it."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from flowplatform.audit.context import Source, audit_context
from flowplatform.audit.models import AuditEntry, AuditImmutableError, purge_expired
from flowplatform.audit.tasks import purge_audit
from flows.models import Flow, Trigger
from flows.services import start_run
from scheduling.models import FlowSchedule
from tests.audit.conftest import SECRET_HEADER, SECRET_PASSWORD, SECRET_URL, SECRET_URL_2, last

pytestmark = pytest.mark.django_db
AUDIT = "/api/v1/audit/"


def slices(secret: str, size: int = 8) -> list[str]:
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


def audit_table_text() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(e)::text FROM audit_auditentry e")
        return "\n".join(row[0] for row in cursor.fetchall())


# -- secrets ------------------------------------------------------------------------------------
def test_no_entry_holds_any_part_of_a_connection_secret(
    api: APIClient, admin_web: Client, tmp_path: Path
) -> None:
    headers = {"Authorization": SECRET_HEADER}
    api.post("/api/v1/connections/", {"name": "crm", "url": SECRET_URL, "headers": headers},
             format="json")  # fmt: skip
    api.patch("/api/v1/connections/crm/", {"url": SECRET_URL_2, "headers": {}}, format="json")
    call_command("addconnection", "crm2", SECRET_URL, "--header", f"Authorization={SECRET_HEADER}",
                 "--as", "root", stdout=StringIO())  # fmt: skip
    pk = AuditEntry.objects.filter(object_repr="crm2").first().object_id  # type: ignore[union-attr]
    admin_web.post(
        reverse("admin:nodes_connection_change", args=[pk]),
        {"name": "crm2", "description": "", "url": SECRET_URL_2,
         "headers": f"Authorization: {SECRET_HEADER}x"},
    )  # fmt: skip
    api.delete("/api/v1/connections/crm/")
    text = audit_table_text()
    assert AuditEntry.objects.filter(object_type="nodes.connection").count() == 5
    secrets = [SECRET_PASSWORD, SECRET_HEADER.split()[1], SECRET_URL_2.split(":")[2].split("@")[0]]
    leaks = [part for secret in secrets for part in slices(secret) if part in text]
    assert leaks == []


def test_a_connection_change_names_the_secret_fields_changed_not_their_values(
    api: APIClient,
) -> None:
    api.post("/api/v1/connections/", {"name": "crm", "url": SECRET_URL}, format="json")
    api.patch("/api/v1/connections/crm/", {"url": SECRET_URL_2}, format="json")
    assert last("change", "nodes.connection").details["fields"] == ["url"]
    api.patch("/api/v1/connections/crm/", {"headers": {"X-Key": "v"}}, format="json")
    assert last("change", "nodes.connection").details["fields"] == ["headers"]
    api.patch("/api/v1/connections/crm/", {"url": SECRET_URL_2}, format="json")  # the same URL
    assert AuditEntry.objects.filter(action="change").count() == 2


def test_an_api_token_is_named_by_its_user_never_by_its_key(root: User, tmp_path: Path) -> None:
    call_command("createapitoken", "root", stdout=StringIO())
    key = Token.objects.get(user=root).key
    entry = last("create", "authtoken.token")
    assert (entry.object_id, entry.object_repr) == (str(root.pk), "API token of root")
    assert not any(part in audit_table_text() for part in slices(key))


# -- what an entry says --------------------------------------------------------------------------
@pytest.mark.usefixtures("example_connections")
def test_a_flow_change_records_the_version_it_made(api: APIClient, minimal_flow: dict) -> None:
    api.post("/api/v1/flows/", minimal_flow, format="json")
    minimal_flow["nodes"][3]["config"]["batch_size"] = 25
    api.put(f"/api/v1/flows/{minimal_flow['slug']}/", minimal_flow, format="json")
    flow = Flow.objects.get()
    graph = AuditEntry.objects.filter(object_type="flows.flow", details__fields=["graph"])
    assert [e.details["version"] for e in graph.order_by("id")] == [1, 2]
    assert last("create", "flows.flow").object_repr == flow.slug


def test_a_schedule_run_is_recorded_as_the_schedule_s_without_a_user(paid_orders: Flow) -> None:
    run = start_run(paid_orders, trigger=Trigger.SCHEDULE)
    entry = last("run", "flows.flowrun")
    assert (entry.source, entry.actor, entry.actor_name) == ("schedule", None, "")
    assert entry.details["version"] == run.version.number
    assert entry.details["flow"] == paid_orders.slug


def test_enabling_schedules_in_bulk_records_each_one_that_changed(
    admin_web: Client, paid_orders: Flow
) -> None:
    schedules = [FlowSchedule(flow=paid_orders, cron=f"0 {h} * * *", enabled=h == 1)
                 for h in (1, 2, 3)]  # fmt: skip
    for schedule in schedules:
        schedule.save()
    admin_web.post(
        reverse("admin:scheduling_flowschedule_changelist"),
        {"action": "enable_schedules", "_selected_action": [s.pk for s in schedules]},
    )
    changed = AuditEntry.objects.filter(action="change", object_type="scheduling.flowschedule")
    assert sorted(int(e.object_id) for e in changed) == [schedules[1].pk, schedules[2].pk]
    assert {(e.source, e.actor_name) for e in changed} == {("admin", "root")}


def test_a_deleted_user_s_entries_keep_the_name(api: APIClient, root: User) -> None:
    api.post("/api/v1/connections/", {"name": "crm", "url": SECRET_URL}, format="json")
    User.objects.filter(pk=root.pk).delete()
    entry = last("create", "nodes.connection")
    assert (entry.actor, entry.actor_name) == (None, "root")


def test_as_names_an_existing_user_only(paid_orders: Flow) -> None:
    with pytest.raises(Exception, match="user 'ghost' does not exist"):
        call_command("runflow", paid_orders.slug, "--as", "ghost")
    assert not AuditEntry.objects.filter(action="run").exists()


# -- append-only --------------------------------------------------------------------------------
@pytest.fixture
def entry(db: None) -> AuditEntry:
    with audit_context(Source.CLI, name="ops"):
        from flowplatform.audit.record import record

        return record("change", type_="flows.flow", object_id=1, object_repr="x")


def test_the_orm_refuses_to_change_or_delete_an_entry(entry: AuditEntry) -> None:
    entry.actor_name = "someone else"
    with pytest.raises(AuditImmutableError):
        entry.save()
    with pytest.raises(AuditImmutableError):
        entry.delete()
    with pytest.raises(AuditImmutableError):
        AuditEntry.objects.filter(pk=entry.pk).update(actor_name="x")
    with pytest.raises(AuditImmutableError):
        AuditEntry.objects.all().delete()
    assert AuditEntry.objects.get(pk=entry.pk).actor_name == "ops"


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_auditentry SET actor_name = 'x'",
        "UPDATE audit_auditentry SET actor_id = NULL, object_repr = 'y'",
        "DELETE FROM audit_auditentry",
    ],
)
def test_the_database_refuses_raw_updates_and_deletes(entry: AuditEntry, sql: str) -> None:
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql)
    assert AuditEntry.objects.get(pk=entry.pk).object_repr == "x"


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
@pytest.mark.parametrize("path", ["", "{id}/"])
def test_the_api_has_no_write_method(
    api: APIClient, entry: AuditEntry, method: str, path: str
) -> None:
    response = getattr(api, method)(AUDIT + path.format(id=entry.pk), {}, format="json")
    assert response.status_code == 405
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_the_admin_is_read_only_even_for_a_superuser(admin_web: Client, entry: AuditEntry) -> None:
    change = reverse("admin:audit_auditentry_change", args=[entry.pk])
    page = admin_web.get(change)
    assert page.status_code == 200 and b"ops" in page.content
    assert b'name="_save"' not in page.content
    assert admin_web.get(reverse("admin:audit_auditentry_add")).status_code == 403
    assert admin_web.post(change, {"actor_name": "x"}).status_code == 403
    delete = reverse("admin:audit_auditentry_delete", args=[entry.pk])
    assert admin_web.post(delete, {"post": "yes"}).status_code == 403
    listing = admin_web.get(reverse("admin:audit_auditentry_changelist"))
    assert listing.status_code == 200 and b"delete_selected" not in listing.content
    assert AuditEntry.objects.get(pk=entry.pk).actor_name == "ops"


# -- retention ----------------------------------------------------------------------------------
def old_entries(*ages_days: int) -> list[AuditEntry]:
    now = timezone.now()
    return [
        AuditEntry.objects.create(
            at=now - timedelta(days=age),
            source="cli",
            action="change",
            object_type="flows.flow",
            object_id=str(age),
        )
        for age in ages_days
    ]


def test_the_purge_deletes_only_entries_past_the_retention(settings: Any) -> None:
    settings.FLOWPLATFORM_AUDIT_RETENTION_DAYS = 30
    old_entries(400, 31, 29, 1)
    assert purge_expired() == 2
    assert sorted(AuditEntry.objects.values_list("object_id", flat=True)) == ["1", "29"]


def test_the_daily_task_and_the_command_purge_with_the_setting(
    settings: Any, tmp_path: Path
) -> None:
    settings.FLOWPLATFORM_AUDIT_RETENTION_DAYS = 365
    old_entries(400, 10)
    assert purge_audit.apply().get() == 1
    old_entries(500)
    out = tmp_path / "out"
    call_command("purgeaudit", "--dry-run", stdout=out.open("w"))
    assert "1 audit entries older than 365 days would be deleted" in out.read_text()
    call_command("purgeaudit", stdout=out.open("w"))
    assert AuditEntry.objects.count() == 1
    assert "flowplatform-purge-audit" in settings.CELERY_BEAT_SCHEDULE


def test_a_retention_of_zero_keeps_everything(settings: Any) -> None:
    settings.FLOWPLATFORM_AUDIT_RETENTION_DAYS = 0
    old_entries(4000)
    assert purge_expired() == 0 and AuditEntry.objects.count() == 1


# -- reading: permission, filters, pagination -----------------------------------------------------
def reader(username: str, *perms: str) -> APIClient:
    user = User.objects.create_user(username)
    for perm in perms:
        user.user_permissions.add(Permission.objects.get(codename=perm))
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_reading_needs_the_view_auditentry_permission(entry: AuditEntry) -> None:
    assert reader("designer", "view_flow").get(AUDIT).status_code == 403
    allowed = reader("auditor", "view_auditentry")
    assert allowed.get(AUDIT).json()["count"] == 1
    assert allowed.post(AUDIT, {}, format="json").status_code == 405
    assert APIClient().get(AUDIT).status_code in (401, 403)


def test_filters(api: APIClient, paid_orders: Flow, tmp_path: Path) -> None:
    other = User.objects.create_user("alice")
    other.user_permissions.add(Permission.objects.get(codename="run_flow"))
    call_command("runflow", paid_orders.slug, "--as", "alice", stdout=StringIO())
    api.patch(f"/api/v1/flows/{paid_orders.slug}/", {"name": "Renamed"}, format="json")

    def found(**query: Any) -> list[tuple[str, str]]:
        body = api.get(AUDIT, query).json()
        return [(e["action"], e["actor"]) for e in body["results"]]

    flow_id = str(paid_orders.pk)
    # The fixture made the flow and its first version outside any request or command.
    made = [("change", ""), ("create", "")]
    assert found(object_type="flows.flow", object_id=flow_id) == [("change", "root"), *made]
    assert found(object_type="flows.flow", object_id="0") == []
    assert found(user="alice") == [("run", "alice")]
    assert found(action="run") == [("run", "alice")]
    assert found(source="cli") == [("run", "alice")]
    middle = AuditEntry.objects.get(action="run").at
    assert found(since=middle.isoformat(), action="change") == [("change", "root")]
    assert found(until=middle.isoformat(), object_type="flows.flow") == made
    assert api.get(AUDIT, {"since": "yesterday"}).status_code == 400
    for moment in ("0001-01-01T00:00:00+18:56", "9999-12-31T23:59:59-18:00"):
        response = api.get(AUDIT, {"until": moment})
        assert response.status_code == 400, moment
        assert response.json()["errors"][0]["path"] == "until"
        # The same check and words as every other list's date-time filters.
        runs = api.get("/api/v1/runs/", {"created_before": moment}).json()["errors"][0]
        assert response.json()["errors"][0]["message"] == runs["message"]
    assert api.get(AUDIT, {"until": "2999-01-01T00:00:00+18:56"}).status_code == 200
    assert api.get(AUDIT, {"action": "nap"}).status_code == 400
    body = api.get(AUDIT, {"limit": 1}).json()
    assert body["count"] == AuditEntry.objects.count() > 1
    assert len(body["results"]) == 1 and body["next"]
    run_entry = AuditEntry.objects.get(action="run")
    detail = api.get(f"{AUDIT}{run_entry.pk}/").json()
    assert detail["actor_id"] == other.pk and detail["object_type"] == "flows.flowrun"
    assert json.dumps(detail["details"])  # JSON all the way


# -- flow versions: their author ----------------------------------------------------------------
@pytest.mark.usefixtures("example_connections")
def test_each_version_records_its_author(
    api: APIClient, admin_web: Client, root: User, minimal_flow: dict, tmp_path: Path
) -> None:
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(minimal_flow))
    call_command("importflow", str(path), stdout=StringIO())  # the OS user
    minimal_flow["nodes"][3]["config"]["batch_size"] = 7
    path.write_text(json.dumps(minimal_flow))
    call_command("importflow", str(path), "--as", "root", stdout=StringIO())
    minimal_flow["nodes"][3]["config"]["batch_size"] = 8
    api.put(f"/api/v1/flows/{minimal_flow['slug']}/", minimal_flow, format="json")
    flow = Flow.objects.get()
    versions = list(flow.versions.order_by("number"))
    from flowplatform.audit.command import os_user

    assert [(v.author, v.author_name) for v in versions] == [
        (None, os_user()),
        (root, "root"),
        (root, "root"),
    ]
    shown = api.get(f"/api/v1/flows/{flow.slug}/versions/").json()["results"]
    assert [v["author"] for v in shown] == ["root", "root", os_user()]
    assert api.get(f"/api/v1/flows/{flow.slug}/versions/1/").json()["author"] == os_user()
    page = admin_web.get(reverse("admin:flows_flow_change", args=[flow.pk]))
    assert b"version 3 by root" in page.content
    run = start_run(flow)
    run_page = admin_web.get(reverse("admin:flows_flowrun_change", args=[run.pk]))
    assert b"field-version_author" in run_page.content
    User.objects.filter(pk=root.pk).delete()
    assert flow.versions.get(number=3).author_name == "root"
