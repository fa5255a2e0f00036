"""Triggers on the canvas, server side: the page carries the flow's triggers and their editor
(never a secret); the canvas' validate and save go through the flow file's checks and rights."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from flows.flowfile import apply_flow_file
from scheduling.triggers.models import FlowTrigger
from scheduling.triggers.secrets import new_secret
from tests.triggers.conftest import orders_flow, webhook_of

pytestmark = pytest.mark.django_db


def canvas_data(client: Client, flow_pk: int) -> dict[str, Any]:
    page = client.get(reverse("admin:flows_flow_change", args=[flow_pk]))
    assert page.status_code == 200
    start = page.content.index(b'id="fp-canvas-data"')
    script = page.content[
        page.content.index(b">", start) + 1 : page.content.index(b"</script>", start)
    ]
    return dict(json.loads(script))


def canvas_post(client: Client, name: str, body: Any) -> Any:
    url = reverse(f"admin:flows_flow_canvas_{name}")
    return client.post(url, body, content_type="application/json")


@pytest.fixture
def designer_client() -> Client:
    """May change flows, not run them."""
    user = User.objects.create_user("designer", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["add_flow", "change_flow", "view_flow"])
    )
    client = Client()
    client.force_login(user)
    return client


def test_the_canvas_page_has_the_triggers_and_their_editor_but_never_a_secret(
    admin_client: Client,
) -> None:
    flow = apply_flow_file(orders_flow())[0]
    secret = new_secret(webhook_of(flow, "orders-created"))

    data = canvas_data(admin_client, flow.pk)

    assert data["flow"]["triggers"] == [{"webhook": "orders-created"}]
    sections = {section["key"]: section for section in data["sections"]}
    assert sorted(sections) == ["alerts", "triggers"]  # the sections with an editor
    section = sections["triggers"]
    assert section["editor"].endswith("scheduling/canvas/triggers.js")
    trigger = webhook_of(flow, "orders-created")
    assert section["data"]["webhooks"] == {"orders-created": {"id": trigger.pk, "has_secret": True}}
    assert section["data"]["canRun"] is True
    assert section["data"]["secretUrl"] == "/api/v1/triggers/0/secret/"
    assert secret not in json.dumps(data)


def test_canvas_validate_names_a_bad_trigger_field(admin_client: Client) -> None:
    data = orders_flow()
    data["triggers"] = [{"files": "inbox", "path": "*.csv", "every": "1s"}]

    body = canvas_post(admin_client, "validate", {"flow": data}).json()

    assert [(p["path"], p["message"]) for p in body["problems"]] == [
        ("triggers[0].every", "poll at most every 5s")
    ]


def test_canvas_save_adds_and_removes_triggers_through_the_flow_file(admin_client: Client) -> None:
    flow = apply_flow_file(orders_flow())[0]
    data = orders_flow()
    data["triggers"] = [{"files": "inbox", "path": "*.csv", "batch": {"max_files": 10}}]

    saved = canvas_post(admin_client, "save", {"flow": data})

    assert saved.status_code == 200, saved.content
    assert list(flow.triggers.values_list("kind", "config__batch")) == [
        ("files", {"max_files": 10})
    ]
    data["triggers"] = []
    assert canvas_post(admin_client, "save", {"flow": data}).status_code == 200
    assert not flow.triggers.exists()


def test_without_the_run_right_the_canvas_saves_the_graph_but_no_trigger_change(
    designer_client: Client,
) -> None:
    flow = apply_flow_file(orders_flow())[0]
    data = orders_flow()  # the same webhook: unchanged
    data["nodes"][0]["ui"] = {"x": 300, "y": 40}

    moved = canvas_post(designer_client, "save", {"flow": data})
    data["triggers"][0]["response"] = "wait"
    changed = canvas_post(designer_client, "save", {"flow": data})

    assert moved.status_code == 200, moved.content
    assert changed.status_code == 403
    assert "run" in json.dumps(changed.json())
    assert webhook_of(flow, "orders-created").option("response") == "accept"
    assert FlowTrigger.objects.count() == 1
