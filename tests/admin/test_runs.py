"""The run monitor: run list, run page with node runs, cancel and re-run."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from flows.models import Flow, FlowRun
from tests.admin.records import FAILED_AT_PAID, recorded_run, run_url

pytestmark = pytest.mark.django_db


def test_the_run_list_shows_badges_and_durations(admin_client: Client, paid_orders: Flow) -> None:
    recorded_run(paid_orders)
    response = admin_client.get(reverse("admin:flows_flowrun_changelist"))
    html = response.content.decode()
    assert response.status_code == 200
    assert '<span class="fp-badge fp-status-failed">failed</span>' in html
    assert "3.00 s" in html


@pytest.mark.parametrize(
    "query",
    [
        "status__exact=failed",
        "trigger__exact=manual",
        "created_at__gte=2000-01-01+00:00:00%2B00:00",
        "flow__id__exact=1",
    ],
)
def test_the_run_list_filters(admin_client: Client, paid_orders: Flow, query: str) -> None:
    run = recorded_run(paid_orders)
    query = query.replace("flow__id__exact=1", f"flow__id__exact={paid_orders.pk}")
    response = admin_client.get(reverse("admin:flows_flowrun_changelist") + "?" + query)
    assert response.status_code == 200
    assert [r.pk for r in response.context["cl"].result_list] == [run.pk]


def test_a_filter_that_matches_nothing_lists_nothing(
    admin_client: Client, paid_orders: Flow
) -> None:
    recorded_run(paid_orders)
    response = admin_client.get(
        reverse("admin:flows_flowrun_changelist") + "?status__exact=succeeded"
    )
    assert list(response.context["cl"].result_list) == []


def test_the_run_page_shows_each_node_with_the_error_and_folded_traceback(
    admin_client: Client, paid_orders: Flow
) -> None:
    run = recorded_run(paid_orders, error="node 'paid' failed: bad value in amount")
    response = admin_client.get(run_url(run))
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-node="paid" data-status="failed"' in html
    assert '<g class="flow-node status-skipped" data-node="push" data-status="skipped">' in html
    assert "in 0 · out 120" in html
    assert '<span class="fp-error-line">bad value in amount</span>' in html
    assert "<details><summary>traceback</summary><pre>Traceback" in html
    assert "0.42 s" in html
    assert 'http-equiv="refresh"' not in html  # finished: no reload


def test_an_active_run_page_refreshes_and_offers_cancel(
    admin_client: Client, paid_orders: Flow
) -> None:
    run = recorded_run(paid_orders, status="running")
    html = admin_client.get(run_url(run)).content.decode()
    assert 'http-equiv="refresh"' in html
    assert reverse("admin:flows_flowrun_cancel", args=[run.pk]) in html


def test_cancel_ends_an_active_run(admin_client: Client, paid_orders: Flow) -> None:
    run = recorded_run(paid_orders, status="running")
    response = admin_client.post(reverse("admin:flows_flowrun_cancel", args=[run.pk]))
    assert response["Location"] == run_url(run)
    run.refresh_from_db()
    assert run.status == "cancelled"


def test_cancel_is_post_only(admin_client: Client, paid_orders: Flow) -> None:
    run = recorded_run(paid_orders, status="running")
    assert admin_client.get(reverse("admin:flows_flowrun_cancel", args=[run.pk])).status_code == 405


@pytest.mark.usefixtures("eager")
def test_rerun_starts_a_new_run_on_the_same_version(
    admin_client: Client, paid_orders: Flow
) -> None:
    cancelled = dict.fromkeys(FAILED_AT_PAID, "cancelled")
    run = recorded_run(paid_orders, "cancelled", cancelled, params={"min_id": 7})
    response = admin_client.post(reverse("admin:flows_flowrun_rerun", args=[run.pk]))
    new = FlowRun.objects.exclude(pk=run.pk).get()
    assert response["Location"] == run_url(new)
    assert (new.trigger, new.params, new.version_id) == ("rerun", {"min_id": 7}, run.version_id)


def test_a_rerun_that_cannot_resume_says_why(admin_client: Client, paid_orders: Flow) -> None:
    run = recorded_run(paid_orders)  # 'orders' succeeded but its output is gone
    response = admin_client.post(reverse("admin:flows_flowrun_rerun", args=[run.pk]), follow=True)
    [message] = [str(m) for m in response.context["messages"]]
    assert message == (
        f"cannot re-run {run.pk}: node 'orders' did not succeed in run {run.pk}: "
        "rerun from it instead"
    )
    assert FlowRun.objects.count() == 1


def test_without_run_flow_there_is_no_cancel_or_rerun(
    designer_client: Client, paid_orders: Flow
) -> None:
    run = recorded_run(paid_orders, status="running")
    html = designer_client.get(run_url(run)).content.decode()
    assert "Cancel run" not in html and "Re-run" not in html
    assert (
        designer_client.post(reverse("admin:flows_flowrun_cancel", args=[run.pk])).status_code
        == 403
    )
    assert (
        designer_client.post(reverse("admin:flows_flowrun_rerun", args=[run.pk])).status_code == 403
    )
    listing = designer_client.get(reverse("admin:flows_flowrun_changelist"))
    assert listing.context["action_form"] is None or "cancel_selected" not in [
        v for v, _ in listing.context["action_form"].fields["action"].choices
    ]
    run.refresh_from_db()
    assert run.status == "running"


def test_cancel_selected_from_the_list(admin_client: Client, paid_orders: Flow) -> None:
    active = recorded_run(paid_orders, status="queued")
    done = recorded_run(paid_orders, status="succeeded")
    admin_client.post(
        reverse("admin:flows_flowrun_changelist"),
        {"action": "cancel_selected", "_selected_action": [active.pk, done.pk]},
    )
    active.refresh_from_db()
    done.refresh_from_db()
    assert (active.status, done.status) == ("cancelled", "succeeded")


def test_runs_cannot_be_added_or_edited(admin_client: Client, paid_orders: Flow) -> None:
    run = recorded_run(paid_orders)
    assert admin_client.get(reverse("admin:flows_flowrun_add")).status_code == 403
    html = admin_client.get(run_url(run)).content.decode()
    assert 'name="_save"' not in html
