"""A flow's alerts on the canvas, in a real browser: add one on failed runs to a webhook
connection and an e-mail address, see a bad address and a missing "late after" refused next
to their fields, save through the flow file, and find the alert stored as the file says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowplatform.alerts.flowfile import export_section
from flowplatform.alerts.models import FlowAlert
from flows.flowfile import apply_flow_file
from flows.models import Flow
from tests.e2e.test_admin_journey import log_in
from tests.e2e.test_canvas_triggers import open_flow, save, wait_for_error, wait_for_no_error
from tests.flows.helpers import add_connection

PANEL = ".fp-panel"
ALERT = f"{PANEL} .fp-alert[data-index='0']"


def alert_field(path: str) -> str:
    """The field of ``alerts[0].path`` in the alerts panel."""
    return f"{PANEL} .fp-field[data-path='alerts[0].{path}']"


def test_an_alert_is_added_on_the_canvas_and_saved_with_the_flow(
    page: Any, live_server: Any, admin_user: Any, screenshots: Path
) -> None:
    add_connection("ops-webhook", "http://127.0.0.1:9/ops")
    add_connection("warehouse", "postgresql://reader@127.0.0.1:5432/warehouse")
    flow: Flow = apply_flow_file(
        {
            "slug": "nightly-load",
            "name": "Nightly load",
            "nodes": [{"key": "body", "type": "payload", "config": {"records_path": "orders"}}],
        }
    )[0]
    base = live_server.url
    log_in(page, base)
    open_flow(page, base, flow)
    if page.is_visible("#nav-sidebar"):
        page.click("#toggle-nav-sidebar")

    # No alert yet; one added is on failed runs.
    assert page.inner_text(".fp-alerts-btn") == "Alerts"
    page.click(".fp-alerts-btn")
    assert "No alert" in page.inner_text(PANEL)
    page.click(f"{PANEL} .fp-add-alert")
    assert page.is_checked(f"{ALERT} .fp-a-on-failed")
    assert not page.is_checked(f"{ALERT} .fp-a-on-succeeded")
    assert page.inner_text(".fp-alerts-btn") == "Alerts (1)"

    # Without a target it is refused; the webhook connection offered is a web one only.
    page.click(".fp-validate-btn")
    wait_for_error(page, f"{ALERT}", "give a webhook connection, e-mail addresses or both")
    options = page.eval_on_selector_all(
        f"{ALERT} .fp-a-connection option", "els => els.map(e => e.value)"
    )
    assert options == ["", "ops-webhook"]
    page.select_option(f"{ALERT} .fp-a-connection", "ops-webhook")

    # A bad address is refused next to its field; fixed, the problem goes.
    page.fill(f"{ALERT} .fp-a-email", "ops@example.com, not-an-address")
    wait_for_error(page, alert_field("email"), "'not-an-address' is not an e-mail address")
    page.fill(f"{ALERT} .fp-a-email", "ops@example.com")
    wait_for_no_error(page, alert_field("email"))

    # "late" asks for how late: a wrong duration is refused, then one that is right.
    page.check(f"{ALERT} .fp-a-on-late")
    page.fill(f"{ALERT} .fp-a-late_after", "soon")
    wait_for_error(page, alert_field("late_after"), "soon")
    page.screenshot(path=str(screenshots / "canvas-alerts.png"))
    page.fill(f"{ALERT} .fp-a-late_after", "45m")
    wait_for_no_error(page, alert_field("late_after"))
    page.click(".fp-validate-btn")
    page.wait_for_selector(".fp-problem-box.fp-ok")
    assert not FlowAlert.objects.filter(flow=flow).exists()  # nothing saved yet

    # Save: through the flow file, as an import.
    save(page)
    assert export_section(flow) == [
        {
            "on": ["failed", "late"],
            "connection": "ops-webhook",
            "email": ["ops@example.com"],
            "late_after": "45m",
        }
    ]
    alert = FlowAlert.objects.get(flow=flow)
    assert (alert.events, alert.connection, alert.emails, alert.late_after_s) == (
        ["failed", "late"],
        "ops-webhook",
        ["ops@example.com"],
        45 * 60,
    )

    # Back on the page, the saved alert is shown; removed and saved, it is gone.
    page.click(".fp-alerts-btn")
    assert page.input_value(f"{ALERT} .fp-a-email") == "ops@example.com"
    assert page.input_value(f"{ALERT} .fp-a-connection") == "ops-webhook"
    assert page.input_value(f"{ALERT} .fp-a-late_after") == "45m"
    page.click(f"{ALERT} .fp-alert-remove")
    assert page.inner_text(".fp-alerts-btn") == "Alerts"
    save(page)
    assert not FlowAlert.objects.filter(flow=flow).exists()
