"""Re-run from a chosen node, on the run's version or the latest; what the run page shows of it."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from flows.flowfile import apply_flow_file
from flows.models import Flow, FlowRun
from tests.admin.records import ALL_SUCCEEDED, recorded_run, run_url

pytestmark = pytest.mark.django_db

FAILED_AT_SHAPE = {"orders": "succeeded", "paid": "succeeded", "shape": "failed", "push": "skipped"}


def rerun_url(run: FlowRun) -> str:
    return reverse("admin:flows_flowrun_rerun", args=[run.pk])


def reused(run: FlowRun) -> dict[str, Any]:
    """Each node of a run and the run whose output it reused (None: it runs again)."""
    return {n.node_key: n.reused_from_id for n in run.node_runs.order_by("position")}


def new_run(old: FlowRun) -> FlowRun:
    return FlowRun.objects.exclude(pk=old.pk).get()


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_the_run_page_links_to_the_rerun_page(admin_client: Client, paid_orders: Flow) -> None:
    run = recorded_run(paid_orders)
    assert rerun_url(run) in admin_client.get(run_url(run)).content.decode()


def test_the_rerun_page_defaults_to_the_first_failed_node(
    admin_client: Client, paid_orders: Flow
) -> None:
    run = recorded_run(paid_orders, states=FAILED_AT_SHAPE)
    form = admin_client.get(rerun_url(run)).context["form"]
    assert form["from_node"].value() in ("", None)
    assert form.fields["from_node"].choices == [
        ("", "default: the first failed node, shape"),
        ("orders", "orders (then paid, shape, push)"),
        ("paid", "paid (then shape, push)"),
        ("shape", "shape (then push)"),
        ("push", "push"),
    ]


def test_the_rerun_page_of_a_run_without_failures_defaults_to_all_nodes(
    admin_client: Client, paid_orders: Flow
) -> None:
    run = recorded_run(paid_orders, "succeeded", ALL_SUCCEEDED)
    form = admin_client.get(rerun_url(run)).context["form"]
    assert form.fields["from_node"].choices[0] == ("", "default: all nodes")


def test_rerun_by_default_resumes_from_the_first_failed_node(
    admin_client: Client, paid_orders: Flow
) -> None:
    run = recorded_run(paid_orders, states=FAILED_AT_SHAPE, with_outputs=True)
    response = admin_client.post(rerun_url(run), {"from_node": ""})
    new = new_run(run)
    assert response["Location"] == run_url(new)
    assert reused(new) == {"orders": run.pk, "paid": run.pk, "shape": None, "push": None}


def test_rerun_from_a_chosen_node_reuses_the_nodes_before_it(
    admin_client: Client, paid_orders: Flow
) -> None:
    run = recorded_run(paid_orders, "succeeded", ALL_SUCCEEDED, with_outputs=True)
    admin_client.post(rerun_url(run), {"from_node": "paid"})
    new = new_run(run)
    assert (new.trigger, new.version_id) == ("rerun", run.version_id)
    assert reused(new) == {"orders": run.pk, "paid": None, "shape": None, "push": None}


def test_rerun_with_the_latest_version_runs_the_changed_flow(
    admin_client: Client, paid_orders: Flow, minimal_flow: dict[str, Any]
) -> None:
    run = recorded_run(paid_orders, "succeeded", ALL_SUCCEEDED, with_outputs=True)
    minimal_flow["nodes"][3]["config"]["batch_size"] = 50  # 'push' changes after the run
    flow, _ = apply_flow_file(minimal_flow)

    admin_client.post(rerun_url(run), {"from_node": "push", "latest": "on"})

    new = new_run(run)
    assert new.version == flow.latest_version != run.version
    assert reused(new) == {"orders": run.pk, "paid": run.pk, "shape": run.pk, "push": None}


def test_a_rerun_the_service_refuses_shows_its_reason_and_starts_nothing(
    admin_client: Client, paid_orders: Flow, minimal_flow: dict[str, Any]
) -> None:
    run = recorded_run(paid_orders, "succeeded", ALL_SUCCEEDED, with_outputs=True)
    minimal_flow["nodes"][1]["config"]["match"] = "any"  # 'paid' changes after the run
    apply_flow_file(minimal_flow)

    response = admin_client.post(rerun_url(run), {"from_node": "push", "latest": "on"})

    assert response.status_code == 200  # the form again, to choose another node
    assert messages_of(response) == [
        f"cannot re-run {run.pk}: node 'paid' changed since run {run.pk}: rerun from it instead"
    ]
    assert FlowRun.objects.count() == 1


def test_an_unknown_node_is_refused_at_the_field(admin_client: Client, paid_orders: Flow) -> None:
    run = recorded_run(paid_orders)
    response = admin_client.post(rerun_url(run), {"from_node": "nowhere"})
    assert response.context["form"].errors["from_node"] == [
        "Select a valid choice. nowhere is not one of the available choices."
    ]
    assert FlowRun.objects.count() == 1


def test_the_rerun_page_needs_run_flow(designer_client: Client, paid_orders: Flow) -> None:
    run = recorded_run(paid_orders)
    assert designer_client.get(rerun_url(run)).status_code == 403


def test_the_run_page_links_a_reused_output_to_its_run(
    admin_client: Client, paid_orders: Flow
) -> None:
    earlier = recorded_run(paid_orders, "succeeded", ALL_SUCCEEDED)
    run = recorded_run(paid_orders, nodes={"orders": {"reused_from": earlier}})
    html = admin_client.get(run_url(run)).content.decode()
    assert html.count("output reused from run") == 1
    link = f'output reused from run <a href="{run_url(earlier)}">{str(earlier.pk)[:8]}</a>'
    assert link in html


def test_the_run_page_shows_deliveries_and_lost_workers_where_not_zero(
    admin_client: Client, paid_orders: Flow
) -> None:
    counts = {"orders": {"deliveries": 3, "workers_lost": 2}, "paid": {"deliveries": 1}}
    run = recorded_run(paid_orders, nodes=counts)
    html = admin_client.get(run_url(run)).content.decode()
    assert '<td class="fp-deliveries">3</td>' in html
    assert '<td class="fp-workers-lost"><span class="fp-warning">2</span></td>' in html
    assert '<td class="fp-deliveries">1</td>' in html
    assert html.count('<td class="fp-workers-lost"></td>') == 3
    assert html.count('<td class="fp-deliveries"></td>') == 2


def test_the_rerun_page_says_when_the_flow_has_a_newer_version(
    admin_client: Client, paid_orders: Flow, minimal_flow: dict[str, Any]
) -> None:
    run = recorded_run(paid_orders)
    minimal_flow["nodes"][3]["config"]["batch_size"] = 50
    apply_flow_file(minimal_flow)
    form = admin_client.get(rerun_url(run)).context["form"]
    assert form.fields["latest"].help_text.endswith("This run used version 1; the latest is 2.")
