"""Schemathesis against the in-process WSGI app: no 500s, every response exactly as documented.

The schema is the one the code generates (every endpoint of every app, so new ones are fuzzed
without touching this file). Two kinds of runs, each with several seeds:

- per operation: the examples, coverage and fuzzing phases, a few examples per operation (the
  examples and coverage phases with the first seed only: their cases do not depend on it);
- stateful: sequences that follow the document's OpenAPI links, so a flow created by one step
  is started by the next, and the run it answers is fetched, cancelled and re-run by its id.

The seeds are ``SEEDS``; with ``CI=true`` one random seed is added to each kind. A seed is part
of the test's id (``[seed=123]``) and is printed: ``FLOWPLATFORM_FUZZ_SEEDS=123`` replays it
(several: ``=1,2,3``); ``FLOWPLATFORM_FUZZ_EXAMPLES`` and ``FLOWPLATFORM_FUZZ_SCENARIOS`` make a
longer run by hand. Bounded: a few examples per operation, no shrinking, no example
database. Runs it starts are never executed (no worker): only the API's answers are under test.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis.stateful import Bundle, initialize
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.stateful.state_machine import StepInput
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from flowplatform.wsgi import application
from flows.api import examples
from flows.flowfile import apply_flow_file
from flows.models import FlowRun, NodeRun
from scheduling.models import FlowSchedule
from tests.flows.helpers import add_connection

#: Fixed seeds, run everywhere; CI adds a random one.
SEEDS = (20260105, 7, 424242)
#: Examples per operation and seed in the fuzzing phase (the coverage phase adds its own).
MAX_EXAMPLES = int(os.environ.get("FLOWPLATFORM_FUZZ_EXAMPLES", "6"))
#: Stateful sequences per seed, and the most steps in one.
SCENARIOS = int(os.environ.get("FLOWPLATFORM_FUZZ_SCENARIOS", "40"))
STEPS = 10
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


def seeds() -> list[int]:
    chosen = os.environ.get("FLOWPLATFORM_FUZZ_SEEDS", "")
    if chosen.strip():
        return [int(seed) for seed in chosen.split(",")]
    if os.environ.get("CI") == "true":
        return [*SEEDS, random.SystemRandom().randrange(2**32)]
    return list(SEEDS)


def load_schema(seed: int, stateful: bool = False, fixed_phases: bool = True) -> Any:
    """The generated OpenAPI document as a schemathesis schema calling the WSGI app.

    ``fixed_phases``: the examples and coverage phases too, besides fuzzing. Their cases do
    not depend on the seed (the schema's examples, and a coverage walk of every parameter's
    boundaries: the same 5,154 cases for every seed, 95% of an operation's calls), so one seed
    runs them and the others fuzz only."""
    document = SchemaGenerator().get_schema(request=None, public=True)
    raw = json.loads(OpenApiJsonRenderer().render(document, renderer_context={}))
    config = {
        "seed": seed,
        "generation": {"max-examples": MAX_EXAMPLES, "database": "none", "no-shrink": True},
        "phases": {
            "examples": {"enabled": not stateful and fixed_phases},
            "coverage": {"enabled": not stateful and fixed_phases},
            "fuzzing": {"enabled": not stateful},
            "stateful": {"enabled": stateful, "max-steps": STEPS},
        },
        "suppress-health-check": ["all"],
    }
    schema = schemathesis.openapi.from_dict(raw, config=SchemathesisConfig.from_dict(config))
    schema.app = application
    return schema


@pytest.fixture
def in_process_requests() -> Iterator[None]:
    """Keep the test's database connection across WSGI requests (as Django's test client does)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def token(
    example_connections: None, in_process_requests: None, minimal_flow: dict[str, Any]
) -> str:
    """A superuser's token, the objects the schema's path examples name, a disabled schedule."""
    flow, _ = apply_flow_file(minimal_flow)
    run = FlowRun.objects.create(
        id=uuid.UUID(examples.RUN_ID), flow=flow, version=flow.versions.get(), trigger="api"
    )
    NodeRun.objects.create(run=run, node_key="orders", node_type="sql_query")
    add_connection("crm", "https://crm.example.test", {"Authorization": "Bearer x"})
    FlowSchedule.objects.create(flow=flow, kind="interval", every_seconds=3600, enabled=False)
    user = User.objects.create_superuser("fuzz", "fuzz@example.test", "pw")
    return Token.objects.create(user=user).key


#: Objects created through the API at the start of every sequence, so that the links from their
#: answers are followed (random bodies rarely make a valid flow or schedule).
SEQUENCE_START = [
    ("/api/v1/flows/", {**examples.MINIMAL_FLOW, "slug": "fuzz-flow"}),
    (f"/api/v1/flows/{examples.MINIMAL_FLOW['slug']}/runs/", {"params": {"min_id": 1}}),
    ("/api/v1/schedules/", {"flow": examples.MINIMAL_FLOW["slug"], "every": "1h"}),
    ("/api/v1/connections/", {"name": "fuzz", "url": "https://fuzz.example.test"}),
]


def operations_test(seed: int, fixed_phases: bool) -> Callable[..., None]:
    @load_schema(seed, fixed_phases=fixed_phases).parametrize()
    def test(case: Any, token: str) -> None:
        print(f"schemathesis seed {seed} (replay: FLOWPLATFORM_FUZZ_SEEDS={seed})")
        case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=CHECKS)

    return test


# One parametrized test per seed: pytest ids read `test_operations_seed_7[GET /api/v1/runs/]`.
# The first seed also runs the examples and coverage phases (the same cases whatever the seed).
for _index, _seed in enumerate(seeds()):
    globals()[f"test_operations_seed_{_seed}"] = operations_test(_seed, fixed_phases=_index == 0)


def _creating(schema: Any, path: str, body: dict[str, Any]) -> Any:
    """A rule run once at the start of each sequence: ``POST path`` with ``body``."""

    @initialize(target=Bundle("created"))
    def create(machine: Any) -> Any:
        operation = schema[path.replace(examples.MINIMAL_FLOW["slug"], "{slug}")]["POST"]
        slug = {"slug": examples.MINIMAL_FLOW["slug"]} if "{slug}" in operation.path else {}
        case = operation.Case(body=body, path_parameters=slug)
        step = StepInput.initial(case)
        # As schemathesis' own first steps do: recorded, so links from the answer are followed.
        machine.recorder.record_case(case=case)
        machine.control.record_step(step, machine.recorder)
        output = machine.step(step)
        assert output.response.status_code in (201, 202), output.response.text
        return output

    return create


@pytest.mark.parametrize("seed", seeds(), ids=lambda seed: f"seed={seed}")
def test_stateful_sequences_follow_links(seed: int, token: str) -> None:
    print(f"schemathesis seed {seed} (replay: FLOWPLATFORM_FUZZ_SEEDS={seed})")
    schema = load_schema(seed, stateful=True)
    headers = {"Authorization": f"Token {token}"}
    calls: dict[str, int] = {}

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        """Each sequence starts from the fixture's objects: a savepoint rolled back after it."""

        def setup(self) -> None:
            self.savepoint = transaction.atomic()
            self.savepoint.__enter__()

        def teardown(self) -> None:
            transaction.set_rollback(True)
            self.savepoint.__exit__(None, None, None)

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": headers}

        def after_call(self, response: Any, case: Any) -> None:
            key = f"{case.operation.label} {response.status_code}"
            calls[key] = calls.get(key, 0) + 1

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS, headers=headers)

    settings = hypothesis.settings(
        max_examples=SCENARIOS,
        stateful_step_count=STEPS,
        deadline=None,
        database=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    for path, body in SEQUENCE_START:
        setattr(
            Workflow, f"start_{path.strip('/').replace('/', '_')}", _creating(schema, path, body)
        )
    hypothesis.seed(seed)(Workflow)
    Workflow.run(settings=settings)
    print(json.dumps(dict(sorted(calls.items())), indent=1))
    # The links were followed: runs, schedules and flows created earlier in a sequence were
    # reached by their ids (any answer but 404: the id was a real one).
    for resource in ("/api/v1/runs/{id}/", "/api/v1/schedules/{id}/", "/api/v1/flows/{slug}/"):
        found = [key for key in calls if resource in key and not key.endswith(" 404")]
        assert found, f"no sequence reached {resource} with a real id"
