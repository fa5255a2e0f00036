"""The public contract of the observability: every metric with exactly its labels, the run's
trace shown as a link, and tracing off (nothing of OpenTelemetry loaded) without ``OTEL_*``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from flowplatform import metrics
from tests.api.conftest import make_user
from tests.conftest import ROOT
from tests.flows.helpers import queued_run

pytestmark = pytest.mark.usefixtures("transactional_db", "example_connections")

#: ISSUE 16's list: each metric, its type and its labels (no run id anywhere).
CONTRACT: dict[str, tuple[str, set[str]]] = {
    "flowplatform_runs": ("counter", {"flow", "status", "trigger"}),
    "flowplatform_run_duration_seconds": ("histogram", {"flow"}),
    "flowplatform_node_runs": ("counter", {"node_type", "status"}),
    "flowplatform_node_duration_seconds": ("histogram", {"node_type"}),
    "flowplatform_rows": ("counter", {"node_type", "direction"}),
    "flowplatform_node_retries": ("counter", {"node_type"}),
    "flowplatform_active_runs": ("gauge", {"flow"}),
    "flowplatform_queue_depth": ("gauge", {"queue"}),
    "flowplatform_schedule_fire_lag_seconds": ("histogram", set()),
    "flowplatform_reaper_actions": ("counter", {"action"}),
}
#: What a histogram's samples add to its labels.
HISTOGRAM_LABELS = {"le"}


def test_every_metric_has_exactly_the_labels_of_the_contract(
    minimal_flow: dict[str, Any],
) -> None:
    assert metrics.collecting()
    queued_run(minimal_flow)  # an active run: a sample of flowplatform_active_runs
    metrics.run_finished("contract", "succeeded", "api", 1.5)
    metrics.node_finished("filter", "succeeded", 0.01, 10, 8, True)
    metrics.schedule_fired(0.2)
    metrics.reaper_acted({"redispatched": 1})
    families = {
        family.name: family
        for family in text_string_to_metric_families(metrics.exposition(state=True).decode())
        # (prometheus_client adds a ``<name>_created`` gauge per series outside multiprocess mode)
        if family.name.startswith("flowplatform_") and not family.name.endswith("_created")
    }
    assert set(families) == set(CONTRACT)
    for name, (kind, labels) in CONTRACT.items():
        family = families[name]
        assert family.type == kind, name
        assert family.samples, f"{name} has no sample"
        for sample in family.samples:
            assert set(sample.labels) - HISTOGRAM_LABELS == labels, (name, sample.labels)
    active = {s.labels["flow"]: s.value for s in families["flowplatform_active_runs"].samples}
    assert active[minimal_flow["slug"]] == 1
    retries = families["flowplatform_node_retries"].samples
    assert any(s.labels == {"node_type": "filter"} and s.value >= 1 for s in retries)


def test_the_trace_id_is_a_link_in_the_api_and_the_admin_when_a_template_is_set(
    minimal_flow: dict[str, Any],
) -> None:
    run = queued_run(minimal_flow)
    run.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    run.save(update_fields=["trace_id"])
    client = Client()
    client.force_login(make_user("operator", superuser=True))
    link = f"https://tempo.example.test/trace/{run.trace_id}"
    with override_settings(
        FLOWPLATFORM_TRACE_URL_TEMPLATE="https://tempo.example.test/trace/{trace_id}"
    ):
        detail = client.get(f"/api/v1/runs/{run.pk}/").json()
        page = client.get(f"/admin/flows/flowrun/{run.pk}/change/").content.decode()
    assert detail["trace_id"] == run.trace_id
    assert detail["trace_url"] == link
    assert f'<a href="{link}" rel="noopener">{run.trace_id}</a>' in page
    # Without a template: the id, no link.
    with override_settings(FLOWPLATFORM_TRACE_URL_TEMPLATE=""):
        assert client.get(f"/api/v1/runs/{run.pk}/").json()["trace_url"] == ""
        page = client.get(f"/admin/flows/flowrun/{run.pk}/change/").content.decode()
    assert run.trace_id in page and link not in page


#: What tracing loads: none of it without ``OTEL_*``.
TRACING = (
    "opentelemetry.sdk.trace",
    "opentelemetry.instrumentation",
    "opentelemetry.exporter",
    "opentelemetry.propagate",
)


def test_without_otel_variables_tracing_is_off_and_loads_nothing() -> None:
    # (redis-py imports OpenTelemetry's metrics SDK of its own when it is installed.)
    script = (
        "import json, sys, django; django.setup()\n"
        f"TRACING = {TRACING!r}\n"
        "from flowplatform import telemetry\n"
        "on = telemetry.setup('cli')\n"
        "with telemetry.run_span('f', 'manual') as span:\n"
        "    pass\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(TRACING))\n"
        "print(json.dumps({'on': on, 'trace_id': span.trace_id, 'loaded': loaded}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer == {"on": False, "trace_id": "", "loaded": []}
    # "none" is off too.
    env["OTEL_TRACES_EXPORTER"] = "none"
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:9"
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["on"] is False
