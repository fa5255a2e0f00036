"""A flow's triggers on the canvas, in a real browser: see them, add a file trigger and a run
after another flow, see each bad value refused next to its field, fix it, save through the
flow file, remove one; a webhook's secret is generated and shown once, never again."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from django.conf import settings

from flows.flowfile import apply_flow_file
from flows.models import Flow
from scheduling.triggers.models import FlowTrigger, TriggerKind
from tests.e2e.test_admin_journey import log_in
from tests.flows.helpers import add_connection

PANEL = ".fp-panel"


def trigger_field(index: int, path: str) -> str:
    """The field of ``triggers[index].path`` in the triggers panel."""
    return f"{PANEL} .fp-field[data-path='triggers[{index}].{path}']"


def errors_of(page: Any, selector: str) -> str:
    return str(page.inner_text(f"{selector} > .fp-field-errors"))


def wait_for_error(page: Any, selector: str, text: str) -> None:
    page.wait_for_selector(f'{selector} > .fp-field-errors li:has-text("{text}")')


def wait_for_no_error(page: Any, selector: str) -> None:
    page.wait_for_selector(f"{selector} > .fp-field-errors:empty", state="attached")
    page.wait_for_function("!window.fpCanvas.state.problems.length")


def open_flow(page: Any, base: str, flow: Flow) -> None:
    page.goto(f"{base}/admin/flows/flow/{flow.pk}/change/")
    page.wait_for_selector(".fp-canvas-root[data-ready=true]")


def webhook_secret(flow: Flow) -> str:
    return FlowTrigger.objects.get(flow=flow, kind=TriggerKind.WEBHOOK).secret()


def save(page: Any) -> None:
    """Save, and wait for the flow's page to come back."""
    with page.expect_navigation():
        page.click(".fp-save-btn")
    page.wait_for_selector("text=Saved; the graph is unchanged")
    page.wait_for_selector(".fp-canvas-root[data-ready=true]")


def test_triggers_are_edited_on_the_canvas_and_a_secret_is_shown_once(
    page: Any, live_server: Any, admin_user: Any, screenshots: Path
) -> None:
    inbox = Path(settings.FLOWPLATFORM_FILE_ROOTS[0]) / f"inbox-{uuid.uuid4().hex[:8]}"
    inbox.mkdir(parents=True)
    add_connection("inbox", f"file://{inbox}")
    flow = apply_flow_file(
        {
            "slug": "orders-in",
            "name": "Orders in",
            "nodes": [{"key": "body", "type": "payload", "config": {"records_path": "orders"}}],
            "triggers": [{"webhook": "orders-created"}],
        }
    )[0]
    base = live_server.url
    log_in(page, base)
    open_flow(page, base, flow)
    if page.is_visible("#nav-sidebar"):
        page.click("#toggle-nav-sidebar")

    # The flow's triggers, from the flow file.
    assert page.inner_text(".fp-triggers-btn") == "Triggers (1)"
    page.click(".fp-triggers-btn")
    webhook = f"{PANEL} .fp-trigger[data-index='0']"
    assert page.input_value(f"{webhook} .fp-t-webhook") == "orders-created"
    assert page.inner_text(f"{webhook} .fp-hook-url") == "POST /hooks/orders-in/orders-created"
    assert "No secret yet" in page.inner_text(f"{webhook} .fp-secret-box")

    # A bad name is refused next to its field; fixed, the problem goes.
    page.fill(f"{webhook} .fp-t-webhook", "orders created")
    wait_for_error(page, trigger_field(0, "webhook"), "String should match pattern")
    page.fill(f"{webhook} .fp-t-webhook", "orders-created")
    wait_for_no_error(page, trigger_field(0, "webhook"))

    # A file trigger: polling too often and a folder outside the connection are refused.
    page.click(f"{PANEL} .fp-add-files")
    files = f"{PANEL} .fp-trigger[data-index='1']"
    page.select_option(f"{files} .fp-t-files", "inbox")
    page.fill(f"{files} .fp-t-path", "orders/*.csv")
    page.fill(f"{files} .fp-t-every", "1s")
    wait_for_error(page, trigger_field(1, "every"), "poll at most every 5s")
    assert page.is_disabled(f"{files} .fp-t-after-success option[value=tag]")  # not S3
    page.select_option(f"{files} .fp-t-after-success", "move")
    page.fill(f"{files} .fp-t-move_to", "../done")
    wait_for_error(page, trigger_field(1, "after_success.move_to"), "a folder relative to")
    page.check(f"{files} .fp-t-batch")
    page.fill(f"{files} .fp-t-max_files", "0")
    wait_for_error(page, trigger_field(1, "batch.max_files"), "greater than or equal to 1")

    # The problem list names them and leads to the field.
    page.click(".fp-validate-btn")
    link = page.locator(".fp-problem-link:has-text('triggers[1].every')")
    link.wait_for()
    page.click(".fp-panel-close")
    link.click()
    assert page.evaluate("document.activeElement.classList.contains('fp-t-every')")
    page.screenshot(path=str(screenshots / "canvas-triggers.png"))
    page.fill(f"{files} .fp-t-every", "1m")
    page.fill(f"{files} .fp-t-move_to", "done/")
    page.fill(f"{files} .fp-t-max_files", "50")
    wait_for_no_error(page, trigger_field(1, "every"))

    # After another flow.
    page.click(f"{PANEL} .fp-add-after")
    after = f"{PANEL} .fp-trigger[data-index='2']"
    page.fill(f"{after} .fp-t-after", "nightly-load")
    page.click(".fp-validate-btn")
    page.wait_for_selector(".fp-problem-box.fp-ok")
    assert FlowTrigger.objects.count() == 1  # nothing saved yet

    # Save: through the flow file, as an import.
    save(page)
    saved = {t.kind: t for t in FlowTrigger.objects.filter(flow=flow)}
    assert saved[TriggerKind.FILES].config == {
        "connection": "inbox",
        "path": "orders/*.csv",
        "every_seconds": 60,
        "batch": {"max_files": 50},
        "after_success": {"move_to": "done/"},
    }
    assert saved[TriggerKind.AFTER].config["upstreams"] == ["nightly-load"]

    # The webhook's secret: generated through the API, shown once...
    page.click(".fp-triggers-btn")
    page.click(f"{webhook} .fp-secret-btn")
    page.wait_for_selector(f"{webhook} input.fp-secret")
    secret = page.input_value(f"{webhook} input.fp-secret")
    assert secret and webhook_secret(flow) == secret
    encrypted = FlowTrigger.objects.get(kind=TriggerKind.WEBHOOK).encrypted_secret

    # ...never again, nor anywhere in the page.
    open_flow(page, base, flow)
    assert secret not in page.content()
    page.click(".fp-triggers-btn")
    assert page.locator(f"{PANEL} input.fp-secret").count() == 0
    assert "A secret is set" in page.inner_text(f"{webhook} .fp-secret-box")

    # Removing a trigger and saving deletes it; the webhook keeps its secret.
    page.click(f"{after} .fp-trigger-remove")
    assert page.inner_text(".fp-triggers-btn") == "Triggers (2)"
    save(page)
    assert set(FlowTrigger.objects.values_list("kind", flat=True)) == {"webhook", "files"}
    assert FlowTrigger.objects.get(kind=TriggerKind.WEBHOOK).encrypted_secret == encrypted
