"""Flow actions: run now, export, import, duplicate, validate; and who may run."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from flows.flowfile import export_flow
from flows.models import Flow, FlowRun

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("example_connections")]


def change_url(flow: Flow) -> str:
    return reverse("admin:flows_flow_change", args=[flow.pk])


def upload(data: Any, name: str = "flow.json") -> SimpleUploadedFile:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    return SimpleUploadedFile(name, body, content_type="application/json")


def shown(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_the_flow_list_renders_with_its_tools(admin_client: Client, paid_orders: Flow) -> None:
    response = admin_client.get(reverse("admin:flows_flow_changelist"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "paid-orders-to-crm" in html
    assert reverse("admin:flows_flow_import") in html
    assert reverse("admin:nodes_catalog") in html


def test_export_downloads_the_flow_file(admin_client: Client, paid_orders: Flow) -> None:
    response = admin_client.get(reverse("admin:flows_flow_export", args=[paid_orders.pk]))
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="paid-orders-to-crm.json"'
    assert json.loads(response.content) == export_flow(paid_orders)


def test_import_creates_the_flow(admin_client: Client, minimal_flow: dict[str, Any]) -> None:
    response = admin_client.post(
        reverse("admin:flows_flow_import"), {"file": upload(minimal_flow)}, follow=True
    )
    flow = Flow.objects.get(slug="paid-orders-to-crm")
    assert response.redirect_chain[-1][0] == change_url(flow)
    assert "Flow paid-orders-to-crm created (version 1)." in shown(response)
    assert export_flow(flow) == minimal_flow


def test_import_of_a_bad_file_lists_its_problems_and_changes_nothing(
    admin_client: Client, paid_orders: Flow, minimal_flow: dict[str, Any]
) -> None:
    bad = copy.deepcopy(minimal_flow)
    bad["name"] = "Changed"
    bad["nodes"][1]["config"]["conditions"][0]["op"] = "eqq"
    response = admin_client.post(reverse("admin:flows_flow_import"), {"file": upload(bad)})
    assert response.status_code == 200
    assert response.context["problems"][0].startswith(
        "nodes[1].config.conditions[0].op (node 'paid'): 'eqq' is not one of eq, ne"
    )
    paid_orders.refresh_from_db()
    assert paid_orders.name == "Paid orders to CRM"


def test_import_of_a_file_that_is_not_json(admin_client: Client) -> None:
    response = admin_client.post(reverse("admin:flows_flow_import"), {"file": upload(b"{nope")})
    assert response.context["form"].errors["file"] == [
        "invalid JSON at line 1 column 2: Expecting property name enclosed in double quotes"
    ]


def test_duplicate_copies_the_graph_under_a_new_slug(
    admin_client: Client, paid_orders: Flow
) -> None:
    url = reverse("admin:flows_flow_duplicate", args=[paid_orders.pk])
    assert admin_client.get(url).context["form"].initial["slug"] == "paid-orders-to-crm-copy"
    response = admin_client.post(url, {"slug": "paid-copy", "name": "Copy"})
    copy_flow = Flow.objects.get(slug="paid-copy")
    assert response["Location"] == change_url(copy_flow)
    original, duplicate = export_flow(paid_orders), export_flow(copy_flow)
    assert duplicate["nodes"] == original["nodes"] and duplicate["edges"] == original["edges"]


def test_duplicate_refuses_an_existing_slug(admin_client: Client, paid_orders: Flow) -> None:
    url = reverse("admin:flows_flow_duplicate", args=[paid_orders.pk])
    response = admin_client.post(url, {"slug": "paid-orders-to-crm", "name": "Copy"})
    assert response.context["form"].errors["slug"] == ["a flow 'paid-orders-to-crm' already exists"]
    assert Flow.objects.count() == 1


def test_validate_selected_reports_each_flow(admin_client: Client, paid_orders: Flow) -> None:
    response = admin_client.post(
        reverse("admin:flows_flow_changelist"),
        {"action": "validate_selected", "_selected_action": [paid_orders.pk]},
        follow=True,
    )
    assert "paid-orders-to-crm: valid" in shown(response)


@pytest.mark.usefixtures("eager")
def test_run_now_starts_a_manual_run_with_params_and_opens_its_page(
    admin_client: Client, paid_orders: Flow
) -> None:
    url = reverse("admin:flows_flow_run", args=[paid_orders.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    assert page.context["query_params"] == ["min_id"]
    response = admin_client.post(url, {"params": '{"min_id": 5}'})
    run = FlowRun.objects.get()
    assert response["Location"] == reverse("admin:flows_flowrun_change", args=[run.pk])
    assert run.trigger == "manual"
    assert run.params == {"min_id": 5}


def test_run_now_refuses_params_that_are_not_an_object(
    admin_client: Client, paid_orders: Flow
) -> None:
    url = reverse("admin:flows_flow_run", args=[paid_orders.pk])
    response = admin_client.post(url, {"params": "[1, 2]"})
    assert response.context["form"].errors["params"] == ["params must be a JSON object"]
    assert not FlowRun.objects.exists()


def test_a_user_without_run_flow_sees_no_run_actions(
    designer_client: Client, paid_orders: Flow
) -> None:
    page = designer_client.get(change_url(paid_orders)).content.decode()
    assert "Run now" not in page
    assert 'name="_save"' in page  # may still design
    listing = designer_client.get(reverse("admin:flows_flow_changelist"))
    actions = [value for value, _label in listing.context["action_form"].fields["action"].choices]
    assert "run_selected" not in actions and "validate_selected" in actions
    run_url = reverse("admin:flows_flow_run", args=[paid_orders.pk])
    assert designer_client.get(run_url).status_code == 403
    assert designer_client.post(run_url, {"params": "{}"}).status_code == 403
    assert not FlowRun.objects.exists()


def test_a_user_with_run_flow_sees_run_now(admin_client: Client, paid_orders: Flow) -> None:
    page = admin_client.get(change_url(paid_orders)).content.decode()
    assert reverse("admin:flows_flow_run", args=[paid_orders.pk]) in page
