"""The ``triggers`` section of a flow file: checked, kept in sync, exported without secrets;
adding one needs the run permission; secrets are generated, audited, never shown again."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from flowplatform.audit.models import AuditEntry
from flows.flowfile import apply_flow_file, export_flow
from flows.validation import FlowValidationError
from scheduling.triggers.models import FlowTrigger
from tests.flows.helpers import SOURCE_DB_URL, add_connection
from tests.triggers.conftest import orders_flow, webhook_of

pytestmark = pytest.mark.django_db

ALL_KINDS = [
    {"webhook": "orders-created", "response": "wait", "timeout_s": 20},
    {"after": "nightly-load"},
    {"after": ["load-b", "load-a"], "wait_for_all": True, "params": {"full": True}},
    {"files": "inbox", "path": "orders/*.csv", "every": "1m", "enabled": False},
]


def with_triggers(triggers: Any) -> dict[str, Any]:
    data = orders_flow()
    data["triggers"] = triggers
    return data


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(FlowValidationError) as caught:
        apply_flow_file(data)
    return [str(p) for p in caught.value.problems]


def test_every_kind_of_trigger_is_imported_and_exported_as_written() -> None:
    flow = apply_flow_file(with_triggers(ALL_KINDS))[0]

    exported = export_flow(flow)["triggers"]

    assert exported == [
        ALL_KINDS[0],
        {"after": "nightly-load"},
        {"after": ["load-a", "load-b"], "wait_for_all": True, "params": {"full": True}},
        {"files": "inbox", "path": "orders/*.csv", "every": "1m", "enabled": False},
    ]


def test_a_reimport_keeps_the_secret_of_a_webhook_it_still_names() -> None:
    flow = apply_flow_file(with_triggers(ALL_KINDS))[0]
    call_command("webhooksecret", flow.slug, "orders-created", stdout=StringIO())
    secret = webhook_of(flow, "orders-created").encrypted_secret

    apply_flow_file(with_triggers([{"webhook": "orders-created"}]))

    assert list(flow.triggers.values_list("name", flat=True)) == ["orders-created"]
    assert webhook_of(flow, "orders-created").encrypted_secret == secret
    assert webhook_of(flow, "orders-created").option("response") == "accept"


def test_a_file_without_triggers_leaves_them_alone() -> None:
    flow = apply_flow_file(with_triggers(ALL_KINDS))[0]
    data = orders_flow()
    del data["triggers"]

    apply_flow_file(data)

    assert flow.triggers.count() == 4


@pytest.mark.parametrize(
    ("triggers", "expected"),
    [
        ("orders", "triggers: Input should be a valid list"),
        ([{"path": "x"}], "triggers[0]: give exactly one of webhook, after or files"),
        (
            [{"webhook": "a", "after": "b"}],
            "triggers[0]: give exactly one of webhook, after or files (found webhook, after)",
        ),
        ([{"webhook": "has space"}], "triggers[0].webhook: String should match pattern"),
        ([{"webhook": "a", "secret": "s3cr3t"}], "triggers[0].secret: Extra inputs"),
        (
            [{"webhook": "a", "response": "later"}],
            "triggers[0].response: 'later' is not one of accept, wait",
        ),
        ([{"after": ["ok", "no way"]}], "triggers[0].after: 'no way' is not a flow slug"),
        ([{"files": "inbox", "path": "*.csv", "every": "1s"}], "triggers[0].every: poll at most"),
        ([{"files": "inbox", "path": "../*.csv"}], "triggers[0].path: a relative glob"),
        ([{"webhook": "a"}, {"webhook": "a"}], "triggers[1]: same trigger as triggers[0]"),
        (
            [{"files": "inbox", "path": "*.csv", "batch": {"max_files": 0}}],
            "triggers[0].batch.max_files: Input should be greater than or equal to 1",
        ),
        (
            [{"files": "inbox", "path": "*.csv", "batch": {"window": "5m"}}],
            "triggers[0].batch.window: Extra inputs are not permitted",
        ),
        (
            [{"files": "inbox", "path": "*.csv", "after_success": {}}],
            "triggers[0].after_success: give exactly one of move_to or tag",
        ),
        (
            [
                {
                    "files": "i",
                    "path": "*.csv",
                    "after_success": {"move_to": "d/", "tag": {"k": "v"}},
                }
            ],
            "triggers[0].after_success: give exactly one of move_to or tag",
        ),
        (
            [{"files": "inbox", "path": "*.csv", "after_success": {"move_to": "../done"}}],
            "triggers[0].after_success.move_to: a folder relative to the connection",
        ),
        (
            [{"files": "inbox", "path": "*.csv", "after_success": {"move_to": "/srv/done"}}],
            "triggers[0].after_success.move_to: a folder relative to the connection",
        ),
        (
            [{"files": "inbox", "path": "*.csv", "after_success": {"move_to": "done/*"}}],
            "triggers[0].after_success.move_to: a folder name, not a glob",
        ),
        (
            [{"files": "inbox", "path": "*.csv", "after_success": {"tag": {"aws:x": "1"}}}],
            "triggers[0].after_success.tag: tag key 'aws:x': keys starting 'aws:' are reserved",
        ),
        (
            [{"files": "inbox", "path": "*.csv", "after_success": {"tag": {"k": "a|b"}}}],
            "triggers[0].after_success.tag: tag 'k': a value is up to 256",
        ),
        (
            [{"files": "inbox", "path": "*.csv", "after_success": {"tag": {"k": 1}}}],
            "triggers[0].after_success.tag.k: Input should be a valid string",
        ),
    ],
)
def test_a_bad_trigger_is_refused_naming_it(triggers: Any, expected: str) -> None:
    found = problems(with_triggers(triggers))

    assert any(p.startswith(expected) for p in found), found
    assert not FlowTrigger.objects.exists()


def test_batches_and_after_success_are_imported_and_exported_as_written() -> None:
    written = [
        {"files": "inbox", "path": "a/*.csv", "every": "5m", "batch": {"max_files": 50}},
        {"files": "inbox", "path": "b/*.csv", "every": "1m", "after_success": {"move_to": "done/"}},
        {"files": "bucket", "path": "*.csv", "every": "1m", "after_success": {"tag": {"k": "v"}}},
    ]
    flow = apply_flow_file(with_triggers(written))[0]

    assert export_flow(flow)["triggers"] == written
    moving = flow.triggers.get(name="inbox:b/*.csv")
    assert moving.config["after_success"] == {"move_to": "done/"}


def test_a_move_to_folder_is_kept_as_a_folder() -> None:
    flow = apply_flow_file(
        with_triggers([{"files": "inbox", "path": "*", "after_success": {"move_to": "a/done"}}])
    )[0]

    assert export_flow(flow)["triggers"][0]["after_success"] == {"move_to": "a/done/"}


def test_a_file_trigger_names_a_file_connection_and_tags_only_on_s3() -> None:
    add_connection("warehouse", SOURCE_DB_URL)
    add_connection("inbox", f"file://{settings.FLOWPLATFORM_FILE_ROOTS[0]}")
    add_connection("bucket", "s3://k:s@landing/in?endpoint=http://127.0.0.1:9000")

    not_files = problems(with_triggers([{"files": "warehouse", "path": "*.csv"}]))
    tagged_dir = problems(
        with_triggers([{"files": "inbox", "path": "*", "after_success": {"tag": {"k": "v"}}}])
    )
    apply_flow_file(
        with_triggers([{"files": "bucket", "path": "*", "after_success": {"tag": {"k": "v"}}}])
    )

    assert not_files == [
        "triggers[0].files: 'warehouse' is not a file connection (postgresql; use file or s3)"
    ]
    assert tagged_dir == [
        "triggers[0].after_success.tag: 'inbox' is a directory: tags exist only on S3 (use move_to)"
    ]
    assert FlowTrigger.objects.get().config["after_success"] == {"tag": {"k": "v"}}


def test_flows_may_not_wait_on_each_other_in_a_cycle() -> None:
    apply_flow_file({**with_triggers([{"after": "orders-in"}]), "slug": "report"})

    found = problems(with_triggers([{"after": "report"}]))

    assert found == [
        "triggers[0].after: flow 'orders-in' would wait on itself (a cycle through 'report')"
    ]
    assert FlowTrigger.objects.count() == 1


def test_an_export_never_holds_the_secret() -> None:
    flow = apply_flow_file(orders_flow())[0]
    out = StringIO()
    call_command("webhooksecret", flow.slug, "orders-created", stdout=out)
    secret = out.getvalue().strip()

    assert len(secret) >= 40
    assert secret not in json.dumps(export_flow(flow))
    assert webhook_of(flow, "orders-created").secret() == secret


def test_generating_a_secret_is_audited_without_its_value() -> None:
    flow = apply_flow_file(orders_flow())[0]
    out = StringIO()

    call_command("webhooksecret", flow.slug, "orders-created", stdout=out)

    entry = AuditEntry.objects.filter(object_type="scheduling.flowtrigger").latest("at")
    assert entry.action == "change"
    assert "secret" in json.dumps(entry.details)
    assert out.getvalue().strip() not in json.dumps(entry.details)
    assert entry.source == "cli"


def test_webhooksecret_names_what_is_missing() -> None:
    apply_flow_file(orders_flow())

    with pytest.raises(CommandError, match="flow 'orders-in' has no webhook 'nope'"):
        call_command("webhooksecret", "orders-in", "nope", stdout=StringIO())


@pytest.fixture
def designer() -> User:
    """Every flow permission but run_flow."""
    user = User.objects.create_user("designer", "d@example.test", "pw", is_staff=True)
    codes = ("view_flow", "add_flow", "change_flow")
    user.user_permissions.set(Permission.objects.filter(codename__in=codes))
    return user


def test_adding_a_trigger_through_the_api_needs_run_flow(designer: User) -> None:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=designer).key}")
    data = orders_flow()
    plain = {k: v for k, v in data.items() if k != "triggers"}
    assert api.post("/api/v1/flows/", plain, format="json").status_code == 201

    response = api.put(f"/api/v1/flows/{data['slug']}/", data, format="json")

    assert response.status_code == 403
    assert "run_flow" in json.dumps(response.json())
    assert not FlowTrigger.objects.exists()
    designer.user_permissions.add(Permission.objects.get(codename="run_flow"))
    designer = User.objects.get(pk=designer.pk)
    assert api.put(f"/api/v1/flows/{data['slug']}/", data, format="json").status_code == 200
    assert webhook_of(FlowTrigger.objects.get().flow, "orders-created").owner == designer


def test_webhooksecret_as_a_user_needs_run_flow(designer: User) -> None:
    apply_flow_file(orders_flow())

    with pytest.raises(CommandError, match="needs the run permission"):
        call_command(
            "webhooksecret", "orders-in", "orders-created", "--as", "designer", stdout=StringIO()
        )


def test_the_api_lists_triggers_and_generates_a_secret_for_who_may_run(
    designer: User, admin_user: User
) -> None:
    flow = apply_flow_file(orders_flow())[0]
    trigger = webhook_of(flow, "orders-created")
    api = APIClient()
    api.force_authenticate(designer)

    listed = api.get("/api/v1/triggers/", {"flow": flow.slug})
    refused = api.post(f"/api/v1/triggers/{trigger.pk}/secret/")

    assert listed.status_code == 200
    assert listed.json()["results"][0]["name"] == "orders-created"
    assert listed.json()["results"][0]["has_secret"] is False
    assert refused.status_code == 403
    api.force_authenticate(admin_user)
    made = api.post(f"/api/v1/triggers/{trigger.pk}/secret/")
    assert made.status_code == 201
    assert webhook_of(flow, "orders-created").secret() == made.json()["secret"]
    assert made.json()["secret"] not in json.dumps(api.get("/api/v1/triggers/").json())


def test_the_api_names_the_field_of_a_bad_after_success(admin_user: User) -> None:
    api = APIClient()
    api.force_authenticate(admin_user)
    data = with_triggers(
        [
            {"files": "inbox", "path": "*.csv", "batch": {"max_files": 20000}},
            {"files": "inbox", "path": "b/*", "after_success": {"move_to": "../x"}},
        ]
    )

    response = api.post("/api/v1/flows/", data, format="json")

    assert response.status_code == 400
    paths = {e["path"]: e["message"] for e in response.json()["errors"]}
    assert paths["triggers[0].batch.max_files"] == "Input should be less than or equal to 10000"
    assert paths["triggers[1].after_success.move_to"].startswith("a folder relative to")
    assert not FlowTrigger.objects.exists()
