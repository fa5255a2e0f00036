"""Alerts of a scheduled flow, end to end: a real worker runs the flow and sends the alerts to
a webhook peer on loopback and a local SMTP server."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from pytest_httpserver import HTTPServer
from rest_framework.test import APIClient
from werkzeug import Request, Response

from flowplatform.alerts.models import AlertDelivery, DeliveryStatus
from flowplatform.alerts.tasks import check_late, notify_run
from flows.flowfile import apply_flow_file
from flows.models import Flow, FlowRun, RunStatus
from scheduling.firing import fire_schedule
from tests.alerts.conftest import Inbox
from tests.conftest import WorkerProcess, wait_until
from tests.flows.helpers import SOURCE_DB_URL, add_connection

#: The password of the broken warehouse connection; the database name repeats it, so the
#: node's error ("database ... does not exist") would carry it if nothing redacted it.
DB_SECRET = "Zq8Pw-S3cret-77"
#: The webhook's token, in its URL path (as Slack's are) and echoed by a failing peer.
HOOK_TOKEN = "T0KEN-hook-4a7c19e2"
HOOK_PATH = f"/hooks/{HOOK_TOKEN}"


def flow_file(connection: str) -> dict[str, Any]:
    return {
        "slug": "nightly-orders",
        "name": "Nightly orders",
        "nodes": [
            {
                "key": "count",
                "type": "sql_query",
                "config": {"connection": connection, "query": "select 1 as one"},
            }
        ],
        "schedules": [{"every": "1h"}],
        "alerts": [
            {
                "on": ["failed", "late", "recovered"],
                "connection": "ops-webhook",
                "email": ["ops@example.test"],
                "late_after": "30m",
            }
        ],
    }


@pytest.fixture
def nightly(worker: WorkerProcess, httpserver: HTTPServer) -> Flow:
    """The flow on a warehouse connection that cannot connect, with its webhook connection."""
    add_connection("broken", f"postgresql://postgres:{DB_SECRET}@127.0.0.1:5432/nodb_{DB_SECRET}")
    add_connection("warehouse", SOURCE_DB_URL)
    add_connection(
        "ops-webhook", httpserver.url_for(HOOK_PATH), {"Authorization": "Bearer hook-auth"}
    )
    return apply_flow_file(flow_file("broken"))[0]


def fire(flow: Flow, hours_ahead: int) -> FlowRun:
    """Fire the flow's hourly schedule as beat would ``hours_ahead`` from now; its run, finished."""
    schedule = flow.schedules.get()
    [record] = fire_schedule(schedule.pk, now=timezone.now() + timedelta(hours=hours_ahead)).started
    assert record.run is not None
    return wait_until(
        lambda: FlowRun.objects.filter(pk=record.run_id, finished_at__isnull=False).first(),
        60,
        message="the scheduled run did not finish",
    )


def sent(run: FlowRun | None, event: str, count: int) -> list[AlertDelivery]:
    deliveries = AlertDelivery.objects.filter(event=event)
    if run is not None:
        deliveries = deliveries.filter(run=run)
    return wait_until(
        lambda: (
            list(deliveries)
            if deliveries.filter(status=DeliveryStatus.SENT).count() == count
            else None
        ),
        30,
        message=f"{count} '{event}' alerts not sent: {list(deliveries.values())}",
    )


def hooks(httpserver: HTTPServer) -> list[tuple[Request, dict[str, Any]]]:
    return [(r, json.loads(r.get_data())) for r, _ in httpserver.log if r.path == HOOK_PATH]


def test_a_failing_scheduled_run_sends_one_webhook_and_one_email(
    nightly: Flow, httpserver: HTTPServer, inbox: Inbox
) -> None:
    httpserver.expect_request(HOOK_PATH, method="POST").respond_with_json({"ok": True})
    run = fire(nightly, 1)
    assert run.status == RunStatus.FAILED
    sent(run, "failed", 2)
    assert notify_run(str(run.pk)) == 0  # noticed twice, still sent once

    [(request, body)] = hooks(httpserver)
    assert request.headers["Authorization"] == "Bearer hook-auth"
    assert request.headers["Idempotency-Key"]
    assert body["event"] == "failed" and body["status"] == "failed"
    assert body["flow"] == "nightly-orders" and body["run_id"] == str(run.pk)
    assert body["trigger"] == "schedule"
    assert body["interval_start"] == run.interval_start.isoformat().replace("+00:00", "Z")
    assert body["interval_end"] == run.interval_end.isoformat().replace("+00:00", "Z")
    assert body["url"] == f"http://flows.example.test/admin/flows/flowrun/{run.pk}/change/"
    assert "does not exist" in body["error"]
    assert body["text"].startswith("Flow nightly-orders run ") and "failed" in body["text"]
    [mail] = inbox.to("ops@example.test")
    assert "nightly-orders" in mail["Subject"] and "failed" in mail["Subject"]
    everything = json.dumps(body) + mail.as_string()
    assert DB_SECRET not in everything

    admin = User.objects.create_superuser("root", "root@example.test", "pw")
    client = APIClient()
    client.force_authenticate(admin)
    detail = client.get(f"/api/v1/runs/{run.pk}/").json()
    assert sorted((a["target"], a["status"]) for a in detail["alerts"]) == [
        ("email:ops@example.test", "sent"),
        ("webhook:ops-webhook", "sent"),
    ]
    client.force_login(admin)
    page = client.get(f"/admin/flows/flowrun/{run.pk}/change/").content.decode()
    assert 'id="alerts"' in page and "webhook:ops-webhook" in page


def test_a_late_interval_alerts_once_and_the_next_success_recovers(
    nightly: Flow, httpserver: HTTPServer, inbox: Inbox
) -> None:
    httpserver.expect_request(HOOK_PATH, method="POST").respond_with_json({"ok": True})
    failed = fire(nightly, 1)
    sent(failed, "failed", 2)
    assert failed.interval_end is not None

    assert check_late(now=failed.interval_end + timedelta(minutes=29)) == 0  # not late yet
    assert check_late(now=failed.interval_end + timedelta(minutes=31)) == 2
    assert check_late(now=failed.interval_end + timedelta(minutes=45)) == 0  # once
    sent(failed, "late", 2)
    late = [body for _, body in hooks(httpserver) if body["event"] == "late"]
    assert len(late) == 1 and late[0]["late_after"] == "30m"
    assert "is late" in late[0]["text"]

    apply_flow_file(flow_file("warehouse"))  # the connection is fixed
    succeeded = fire(nightly, 2)
    assert succeeded.status == RunStatus.SUCCEEDED
    sent(succeeded, "recovered", 2)
    events = [body["event"] for _, body in hooks(httpserver)]
    assert events == ["failed", "late", "recovered"]  # no 'succeeded': not asked for
    assert len(inbox.to("ops@example.test")) == 3
    # The succeeded interval is never late.
    assert succeeded.interval_end is not None
    assert check_late(now=succeeded.interval_end + timedelta(minutes=31)) == 0


def test_a_succeeded_alert_is_sent_once_per_run_when_asked_for(
    nightly: Flow, httpserver: HTTPServer, inbox: Inbox
) -> None:
    httpserver.expect_request(HOOK_PATH, method="POST").respond_with_json({"ok": True})
    every_success = flow_file("warehouse")
    every_success["alerts"][0]["on"] = ["succeeded"]
    del every_success["alerts"][0]["late_after"]
    apply_flow_file(every_success)
    run = fire(nightly, 1)
    assert run.status == RunStatus.SUCCEEDED
    sent(run, "succeeded", 2)
    assert notify_run(str(run.pk)) == 0  # noticed twice, still sent once
    [(_, body)] = hooks(httpserver)
    assert body["event"] == "succeeded" and body["status"] == "succeeded"
    assert body["run_id"] == str(run.pk) and not body["error"]
    assert "succeeded" in body["text"]
    [mail] = inbox.to("ops@example.test")
    assert "succeeded" in mail["Subject"]
    # The next success is alerted again (another run): once per run and event.
    second = fire(nightly, 2)
    sent(second, "succeeded", 2)
    assert [b["run_id"] for _, b in hooks(httpserver)] == [str(run.pk), str(second.pk)]


def test_a_failing_webhook_is_retried_with_backoff_then_given_up_redacted(
    nightly: Flow, httpserver: HTTPServer, inbox: Inbox
) -> None:
    def unavailable(request: Request) -> Response:
        return Response(f"token {HOOK_TOKEN} is rate limited", status=503)

    httpserver.expect_request(HOOK_PATH, method="POST").respond_with_handler(unavailable)
    run = fire(nightly, 1)
    webhook = wait_until(
        lambda: AlertDelivery.objects.filter(
            run=run, target="webhook:ops-webhook", status=DeliveryStatus.FAILED
        ).first(),
        30,
        message="the webhook delivery did not give up",
    )
    assert webhook.attempts == 3  # FLOWPLATFORM_ALERT_MAX_ATTEMPTS in the test settings
    requests = [r for r, _ in hooks(httpserver)]
    assert len(requests) == 3
    assert len({r.headers["Idempotency-Key"] for r in requests}) == 1
    assert "HTTP 503" in webhook.error
    assert HOOK_TOKEN not in webhook.error
    sent(run, "failed", 1)  # the e-mail went regardless

    admin = User.objects.create_superuser("root", "root@example.test", "pw")
    client = APIClient()
    client.force_authenticate(admin)
    assert HOOK_TOKEN not in client.get(f"/api/v1/runs/{run.pk}/").content.decode()


def test_a_webhook_that_recovers_within_the_attempts_gets_the_alert(
    nightly: Flow, httpserver: HTTPServer, inbox: Inbox
) -> None:
    answers = iter([503, 200])

    def flaky(request: Request) -> Response:
        return Response("{}", status=next(answers, 200))

    httpserver.expect_request(HOOK_PATH, method="POST").respond_with_handler(flaky)
    run = fire(nightly, 1)
    [webhook] = [d for d in sent(run, "failed", 2) if d.target.startswith("webhook:")]
    assert webhook.attempts == 2 and webhook.error == ""
    assert len(hooks(httpserver)) == 2
