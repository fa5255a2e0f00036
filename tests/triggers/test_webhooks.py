"""Webhooks: a signed call starts exactly one run; wrong, missing and replayed secrets start none."""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import pytest

from flows.models import FlowRun, RunStatus
from flows.services import wait_for_run
from tests.conftest import WorkerProcess, wait_until
from tests.triggers.conftest import caller_for, orders_flow

BODY = {"orders": [{"id": 1, "status": "paid"}, {"id": 2, "status": "pending"}]}


def runs_of(slug: str) -> list[FlowRun]:
    return list(FlowRun.objects.filter(flow__slug=slug).order_by("created_at"))


def test_a_signed_call_starts_exactly_one_run_with_the_body_as_payload(
    worker: WorkerProcess,
) -> None:
    flow, caller = caller_for(orders_flow())
    body = json.dumps(BODY).encode()
    headers = caller.signed_headers(body)

    answer = caller.post(body, headers)

    assert answer.status_code == 202
    run = FlowRun.objects.get(pk=answer.json()["run"])
    assert run.trigger == "webhook"
    assert run.payload == BODY
    assert wait_for_run(run, timeout=60).status == RunStatus.SUCCEEDED
    # The same signed call again is a replay: refused, nothing started.
    replay = caller.post(body, headers)
    assert replay.status_code == 401
    assert "replay" in replay.json()["detail"]
    assert len(runs_of(flow.slug)) == 1


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no secret"),
        pytest.param({"Authorization": "Bearer not-the-secret"}, id="wrong bearer"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="another scheme"),
        pytest.param(
            {"X-Flowplatform-Timestamp": "{now}", "X-Flowplatform-Signature": "sha256=" + "0" * 64},
            id="wrong signature",
        ),
        pytest.param({"X-Flowplatform-Timestamp": "{now}"}, id="timestamp without signature"),
    ],
)
def test_a_wrong_or_missing_secret_is_refused_and_starts_nothing(
    db: None, headers: dict[str, str]
) -> None:
    flow, caller = caller_for(orders_flow())
    headers = {k: v.replace("{now}", str(int(time.time()))) for k, v in headers.items()}

    answer = caller.post(json.dumps(BODY).encode(), headers)

    assert answer.status_code == 401
    assert runs_of(flow.slug) == []


def test_a_signature_more_than_five_minutes_old_is_refused(db: None) -> None:
    flow, caller = caller_for(orders_flow())
    body = json.dumps(BODY).encode()

    answer = caller.post(body, caller.signed_headers(body, at=time.time() - 301))

    assert answer.status_code == 401
    assert "300s off" in answer.json()["detail"]
    assert runs_of(flow.slug) == []


def test_a_signature_of_another_body_is_refused(db: None) -> None:
    flow, caller = caller_for(orders_flow())
    headers = caller.signed_headers(b'{"orders": []}')

    answer = caller.post(json.dumps(BODY).encode(), headers)

    assert answer.status_code == 401
    assert runs_of(flow.slug) == []


def test_an_unknown_webhook_answers_as_a_wrong_secret(db: None) -> None:
    _flow, caller = caller_for(orders_flow())
    caller.name = "orders-deleted"

    assert caller.bearer(BODY).status_code == 401


def test_a_webhook_without_a_generated_secret_accepts_nothing(db: None) -> None:
    from django.test import Client

    from flows.flowfile import apply_flow_file
    from tests.triggers.conftest import Caller

    flow = apply_flow_file(orders_flow())[0]
    caller = Caller(Client(), flow.slug, "orders-created", "")

    assert caller.bearer(BODY, secret="").status_code == 401
    assert runs_of(flow.slug) == []


def test_the_same_idempotency_key_twice_gives_one_run(db: None) -> None:
    flow, caller = caller_for(orders_flow())

    first = caller.bearer(BODY, **{"Idempotency-Key": "order-1-created"})
    second = caller.signed(BODY, **{"Idempotency-Key": "order-1-created"})
    other = caller.bearer(BODY, **{"Idempotency-Key": "order-2-created"})

    assert (first.status_code, second.status_code, other.status_code) == (202, 200, 202)
    assert first.json()["run"] == second.json()["run"] != other.json()["run"]
    assert len(runs_of(flow.slug)) == 2


def test_bearer_calls_without_a_key_each_start_a_run(db: None) -> None:
    flow, caller = caller_for(orders_flow())

    answers = [caller.bearer(BODY) for _ in range(2)]

    assert [a.status_code for a in answers] == [202, 202]
    assert len(runs_of(flow.slug)) == 2


def test_a_body_over_the_limit_is_refused(db: None, settings: Any) -> None:
    settings.FLOWPLATFORM_WEBHOOK_MAX_BYTES = 100
    flow, caller = caller_for(orders_flow())

    answer = caller.bearer({"orders": [{"id": i, "status": "paid"} for i in range(20)]})

    assert answer.status_code == 413
    assert runs_of(flow.slug) == []


def test_a_body_that_is_not_json_is_refused(db: None) -> None:
    flow, caller = caller_for(orders_flow())

    answer = caller.post(b"{not json", {"Authorization": f"Bearer {caller.secret}"})

    assert answer.status_code == 400
    assert runs_of(flow.slug) == []


def test_calls_beyond_the_trigger_rate_limit_answer_429(db: None) -> None:
    flow, caller = caller_for(orders_flow(rate_per_minute=2))
    # The limit counts per clock minute: start well inside one.
    wait_until(lambda: time.time() % 60 < 50, 11)

    codes = [caller.bearer(BODY).status_code for _ in range(3)]

    assert codes == [202, 202, 429]
    assert len(runs_of(flow.slug)) == 2


def test_response_wait_answers_with_the_run_and_its_last_records(worker: WorkerProcess) -> None:
    _flow, caller = caller_for(orders_flow(response="wait", timeout_s=60))

    answer = caller.bearer(BODY)

    assert answer.status_code == 200
    result = answer.json()
    assert result["status"] == "succeeded"
    assert result["node"] == "paid"
    assert result["records"] == [{"id": 1, "status": "paid"}]


def test_response_wait_answers_within_milliseconds_of_the_runs_end(
    worker: WorkerProcess,
) -> None:
    _flow, caller = caller_for(orders_flow(response="wait", timeout_s=60))
    caller.bearer(BODY)  # warm-up
    lags = []
    for _ in range(10):
        answer = caller.bearer(BODY)
        answered_at = time.time()
        run = FlowRun.objects.get(pk=answer.json()["run"])
        assert answer.status_code == 200 and run.finished_at is not None
        lags.append((answered_at - run.finished_at.timestamp()) * 1000)
    print(f"webhook response lag after finished_at: median {statistics.median(lags):.1f} ms, "
          f"max {max(lags):.1f} ms")  # fmt: skip
    # The goal is 20 ms; the bound leaves room for a loaded 2-core machine, and fails polling
    # every 200 ms (as before the run-end channel), which puts the median near 100 ms.
    assert statistics.median(lags) <= 40


def test_query_params_bind_scalar_payload_values(worker: WorkerProcess, warehouse: None) -> None:
    lookup = {
        "slug": "lookup",
        "name": "Lookup",
        "nodes": [
            {
                "key": "q",
                "type": "sql_query",
                "config": {
                    "connection": "warehouse",
                    "query": "select %(payload.order.id)s::int * 2 as doubled,"
                    " %(payload.note)s::text as note",
                },
            }
        ],
        "triggers": [{"webhook": "look", "response": "wait", "timeout_s": 60}],
    }
    _flow, caller = caller_for(lookup, "look")

    answer = caller.bearer({"order": {"id": 21}, "note": "x'); drop table y; --"})
    nested = caller.bearer({"order": {"id": [1, 2]}, "note": "n"})

    assert answer.json()["records"] == [{"doubled": 42, "note": "x'); drop table y; --"}]
    assert nested.json()["status"] == "failed"
    assert "only scalar values can be bound" in nested.json()["error"]
