"""The ``alerts`` section of a flow file: what it accepts, what it refuses (with the path at
fault), and that export gives back what was imported."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from flows.flowfile import apply_flow_file, export_flow
from flows.validation import FlowValidationError
from tests.flows.helpers import add_connection

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("example_connections")]

HOOK = {"on": ["failed", "recovered"], "connection": "ops-webhook"}


@pytest.fixture(autouse=True)
def webhook() -> None:
    add_connection("ops-webhook", "https://hooks.example.test/services/T0/B0/xyz")


def with_alerts(minimal_flow: dict[str, Any], alerts: Any) -> dict[str, Any]:
    return {**copy.deepcopy(minimal_flow), "alerts": alerts}


def problems(minimal_flow: dict[str, Any], alerts: Any) -> list[str]:
    with pytest.raises(FlowValidationError) as caught:
        apply_flow_file(with_alerts(minimal_flow, alerts))
    return [str(p) for p in caught.value.problems]


def test_alerts_round_trip_through_export(minimal_flow: dict[str, Any]) -> None:
    alerts = [
        HOOK,
        {"on": ["late", "failed"], "email": ["ops@example.test"], "late_after": "30m"},
    ]
    flow, _ = apply_flow_file(with_alerts(minimal_flow, alerts))
    assert export_flow(flow)["alerts"] == [
        HOOK,
        {"on": ["failed", "late"], "email": ["ops@example.test"], "late_after": "30m"},
    ]


def test_a_file_without_alerts_keeps_them_and_an_empty_list_removes_them(
    minimal_flow: dict[str, Any],
) -> None:
    flow, _ = apply_flow_file(with_alerts(minimal_flow, [HOOK]))
    apply_flow_file(copy.deepcopy(minimal_flow))
    assert export_flow(flow)["alerts"] == [HOOK]
    apply_flow_file(with_alerts(minimal_flow, []))
    assert "alerts" not in export_flow(flow)


@pytest.mark.parametrize(
    ("alerts", "expected"),
    [
        ({"on": ["failed"]}, "alerts: Input should be a valid list"),
        ([{"on": ["failed"]}], "alerts[0]: give a webhook connection, e-mail addresses or both"),
        (
            [{"on": ["failed", "exploded"], "connection": "ops-webhook"}],
            "alerts[0].on[1]: unknown event 'exploded' (one of failed, succeeded, late, recovered)",
        ),
        (
            [{"on": ["failed"], "connection": "nope"}],
            "alerts[0].connection: connection 'nope' does not exist",
        ),
        (
            [{"on": ["failed"], "email": ["ops@example.test", "not-an-address"]}],
            "alerts[0].email[1]: 'not-an-address' is not an e-mail address",
        ),
        (
            [{"on": ["late"], "connection": "ops-webhook"}],
            "alerts[0].late_after: required with 'late' (e.g. '30m')",
        ),
        (
            [{"on": ["failed"], "connection": "ops-webhook", "late_after": "30m"}],
            "alerts[0].late_after: applies to alerts on 'late' only",
        ),
        (
            [{"on": ["late"], "connection": "ops-webhook", "late_after": "soon"}],
            "alerts[0].late_after: 'soon' is not a duration such as '30s', '5m', '1h30m' or '1d'",
        ),
    ],
)
def test_a_bad_alert_is_refused_naming_the_path(
    minimal_flow: dict[str, Any], alerts: Any, expected: str
) -> None:
    assert expected in problems(minimal_flow, alerts)


def test_an_unknown_key_and_an_empty_event_list_are_refused(minimal_flow: dict[str, Any]) -> None:
    found = problems(minimal_flow, [{"on": [], "connection": "ops-webhook", "channel": "#ops"}])
    assert any(p.startswith("alerts[0].on") for p in found)
    assert any(p.startswith("alerts[0].channel") for p in found)


def test_alerts_are_edited_in_the_admin_checked_like_the_flow_file(
    admin_client: Any, minimal_flow: dict[str, Any]
) -> None:
    flow, _ = apply_flow_file(minimal_flow)
    form = {
        "flow": str(flow.pk),
        "position": "0",
        "events": '["failed", "late"]',
        "connection": "ops-webhook",
        "emails": '["ops@example.test"]',
        "late_after_s": "1800",
    }
    response = admin_client.post("/admin/alerts/flowalert/add/", form)
    assert response.status_code == 302, response.content.decode()[-2000:]
    exported = export_flow(flow)["alerts"]
    assert exported == [
        {
            "on": ["failed", "late"],
            "connection": "ops-webhook",
            "email": ["ops@example.test"],
            "late_after": "30m",
        }
    ]
    # The flow file's rules and messages: late_after only with 'late'.
    refused = admin_client.post("/admin/alerts/flowalert/add/", {**form, "events": '["failed"]'})
    assert refused.status_code == 200
    assert "applies to alerts on &#x27;late&#x27; only" in refused.content.decode()
    assert len(export_flow(flow)["alerts"]) == 1
