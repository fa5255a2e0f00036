"""Node policies and the run timeout on the flow page: kept, edited, checked at their field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from flows.flowfile import apply_flow_file, export_flow
from flows.models import Flow
from flows.validation import validate_flow
from tests.admin.forms import flow_post_data, page_post_data

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("example_connections")]

ADD_URL = reverse("admin:flows_flow_add")
PUSH_POLICY = {"max_retries": 3, "retry_backoff_s": 0.5, "timeout_s": 120.0}


def change_url(flow: Flow) -> str:
    return reverse("admin:flows_flow_change", args=[flow.pk])


def saved(flow: Flow) -> dict[str, Any]:
    """The flow file of what is stored now (not of the in-memory object)."""
    return export_flow(Flow.objects.get(pk=flow.pk))


def node_errors(response: Any, index: int, field: str) -> list[str]:
    [nodes] = [i for i in response.context["inline_admin_formsets"] if i.formset.prefix == "nodes"]
    return list(nodes.formset.forms[index].errors.get(field, []))


@pytest.fixture
def policy_file(minimal_flow: dict[str, Any]) -> dict[str, Any]:
    """The minimal flow with a policy on its HTTP node and a run timeout."""
    minimal_flow["run_timeout_s"] = 3600
    minimal_flow["nodes"][3]["policy"] = dict(PUSH_POLICY)
    return minimal_flow


@pytest.fixture
def with_policies(policy_file: dict[str, Any]) -> Flow:
    flow, _ = apply_flow_file(copy.deepcopy(policy_file))
    return flow


@pytest.fixture
def edit_page(admin_client: Client, with_policies: Flow) -> dict[str, Any]:
    """What the change page of ``with_policies`` submits unchanged."""
    return page_post_data(admin_client.get(change_url(with_policies)))


def test_saving_the_page_unchanged_keeps_node_policies_and_the_run_timeout(
    admin_client: Client, with_policies: Flow, edit_page: dict[str, Any]
) -> None:
    before = saved(with_policies)
    response = admin_client.post(change_url(with_policies), edit_page)
    assert response.status_code == 302, response.context and response.context["errors"]
    after = saved(with_policies)
    assert after["run_timeout_s"] == 3600
    assert after["nodes"][3]["policy"] == PUSH_POLICY
    assert after == before
    assert with_policies.versions.count() == 1


def test_the_node_form_shows_the_stored_policy(edit_page: dict[str, Any]) -> None:
    shown = {
        name: edit_page.get(f"nodes-3-policy__{name}", "")
        for name in ("max_retries", "retry_backoff_s", "retry_backoff_max_s", "timeout_s")
    }
    assert shown == {
        "max_retries": "3",
        "retry_backoff_s": "0.5",
        "retry_backoff_max_s": "",
        "timeout_s": "120.0",
    }
    assert edit_page["run_timeout_s"] == "3600"


def test_empty_policy_fields_show_their_defaults(admin_client: Client, with_policies: Flow) -> None:
    html = admin_client.get(change_url(with_policies)).content.decode()
    assert 'name="nodes-0-policy__retry_backoff_max_s"' in html
    assert 'placeholder="default: 300.0"' in html
    assert "Retries and timeout" in html


def test_a_flow_with_policies_is_created_through_the_add_page(
    admin_client: Client, policy_file: dict[str, Any]
) -> None:
    response = admin_client.post(ADD_URL, flow_post_data(policy_file))
    assert response.status_code == 302, response.context and response.context["errors"]
    assert export_flow(Flow.objects.get(slug=policy_file["slug"])) == policy_file


def test_a_policy_edited_in_the_form_keeps_only_values_that_differ_from_the_default(
    admin_client: Client, with_policies: Flow, edit_page: dict[str, Any]
) -> None:
    edit_page.update(
        {
            "nodes-0-policy__max_retries": "2",
            "nodes-0-policy__retry_backoff_s": "2",  # the default
            "nodes-3-policy__max_retries": "0",  # the default
        }
    )
    response = admin_client.post(change_url(with_policies), edit_page)
    assert response.status_code == 302, response.context and response.context["errors"]
    nodes = saved(with_policies)["nodes"]
    assert nodes[0]["policy"] == {"max_retries": 2}
    assert nodes[3]["policy"] == {"retry_backoff_s": 0.5, "timeout_s": 120.0}
    assert with_policies.versions.count() == 2


def test_emptying_the_policy_fields_returns_the_node_to_the_defaults(
    admin_client: Client, with_policies: Flow, edit_page: dict[str, Any]
) -> None:
    for name in ("max_retries", "retry_backoff_s", "timeout_s"):
        edit_page[f"nodes-3-policy__{name}"] = ""
    response = admin_client.post(change_url(with_policies), edit_page)
    assert response.status_code == 302
    assert "policy" not in saved(with_policies)["nodes"][3]


def test_a_policy_value_out_of_bounds_is_shown_at_its_field_with_the_cli_message(
    admin_client: Client,
    with_policies: Flow,
    edit_page: dict[str, Any],
    policy_file: dict[str, Any],
) -> None:
    policy_file["nodes"][1]["policy"] = {"max_retries": 50}
    [expected] = validate_flow(policy_file)
    assert expected.path == "nodes[1].policy.max_retries"
    edit_page["nodes-1-policy__max_retries"] = "50"

    response = admin_client.post(change_url(with_policies), edit_page)

    assert response.status_code == 200
    assert node_errors(response, 1, "policy__max_retries") == [expected.message]
    assert expected.message == "Input should be less than or equal to 20"
    assert "policy" not in saved(with_policies)["nodes"][1]


def test_a_policy_value_that_is_not_a_number_is_shown_at_its_field(
    admin_client: Client, with_policies: Flow, edit_page: dict[str, Any]
) -> None:
    edit_page["nodes-3-policy__timeout_s"] = "soon"
    response = admin_client.post(change_url(with_policies), edit_page)
    assert node_errors(response, 3, "policy__timeout_s") == [
        "Input should be a valid number, unable to parse string as a number"
    ]
    assert saved(with_policies)["nodes"][3]["policy"] == PUSH_POLICY


def test_the_run_timeout_is_set_from_the_flow_form(admin_client: Client, paid_orders: Flow) -> None:
    data = page_post_data(admin_client.get(change_url(paid_orders)))
    data["run_timeout_s"] = "900"
    response = admin_client.post(change_url(paid_orders), data)
    assert response.status_code == 302, response.context and response.context["errors"]
    assert saved(paid_orders)["run_timeout_s"] == 900
    assert paid_orders.versions.count() == 2  # the run timeout is part of the version


def test_emptying_the_run_timeout_removes_it(
    admin_client: Client, with_policies: Flow, edit_page: dict[str, Any]
) -> None:
    edit_page["run_timeout_s"] = ""
    response = admin_client.post(change_url(with_policies), edit_page)
    assert response.status_code == 302
    assert "run_timeout_s" not in saved(with_policies)


def test_a_run_timeout_out_of_bounds_is_shown_at_its_field_with_the_cli_message(
    admin_client: Client, with_policies: Flow, edit_page: dict[str, Any]
) -> None:
    edit_page["run_timeout_s"] = str(8 * 86400)
    response = admin_client.post(change_url(with_policies), edit_page)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["run_timeout_s"] == [
        "Input should be less than or equal to 604800"
    ]
    assert saved(with_policies)["run_timeout_s"] == 3600


def test_a_viewer_sees_the_policy_read_only(viewer_client: Client, with_policies: Flow) -> None:
    html = viewer_client.get(change_url(with_policies)).content.decode()
    assert "Retries and timeout:" in html
    stored = "{&quot;max_retries&quot;: 3, &quot;retry_backoff_s&quot;: 0.5, &quot;timeout_s&quot;: 120.0}"
    assert f'<div class="readonly">{stored}</div>' in html
    assert 'name="nodes-3-policy__max_retries"' not in html
