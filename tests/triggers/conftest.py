"""Actors of the trigger tests: flows with triggers, a signed webhook caller."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.test import Client

from flows.flowfile import apply_flow_file
from flows.models import Flow
from scheduling.triggers.models import FlowTrigger, TriggerKind
from scheduling.triggers.secrets import new_secret
from scheduling.triggers.webhooks import sign
from tests.flows.helpers import SOURCE_DB_URL, add_connection

#: Records at ``orders`` of the body; the paid ones come back.
ORDERS_FLOW: dict[str, Any] = {
    "slug": "orders-in",
    "name": "Orders in",
    "nodes": [
        {"key": "body", "type": "payload", "config": {"records_path": "orders"}},
        {
            "key": "paid",
            "type": "filter",
            "config": {"conditions": [{"field": "status", "op": "eq", "value": "paid"}]},
        },
    ],
    "edges": [{"from": "body", "to": "paid"}],
    "triggers": [{"webhook": "orders-created"}],
}


def orders_flow(**webhook: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(ORDERS_FLOW))
    data["triggers"][0].update(webhook)
    return data


class Caller:
    """Calls one webhook the way a partner's system does."""

    def __init__(self, client: Client, flow: str, name: str, secret: str) -> None:
        self.client, self.flow, self.name, self.secret = client, flow, name, secret

    @property
    def url(self) -> str:
        return f"/hooks/{self.flow}/{self.name}"

    def signed_headers(self, body: bytes, at: float | None = None) -> dict[str, str]:
        stamp = str(int(time.time() if at is None else at))
        return {
            "X-Flowplatform-Timestamp": stamp,
            "X-Flowplatform-Signature": f"sha256={sign(self.secret, stamp, body)}",
        }

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> Any:
        return self.client.post(
            self.url, data=body, content_type="application/json", headers=headers or {}
        )

    def signed(self, payload: Any, **headers: str) -> Any:
        body = json.dumps(payload).encode()
        return self.post(body, {**self.signed_headers(body), **headers})

    def bearer(self, payload: Any, secret: str | None = None, **headers: str) -> Any:
        body = json.dumps(payload).encode()
        auth = {"Authorization": f"Bearer {secret if secret is not None else self.secret}"}
        return self.post(body, {**auth, **headers})


def webhook_of(flow: Flow, name: str) -> FlowTrigger:
    return FlowTrigger.objects.get(flow=flow, kind=TriggerKind.WEBHOOK, name=name)


def caller_for(data: dict[str, Any], name: str = "orders-created") -> tuple[Flow, Caller]:
    flow = apply_flow_file(data)[0]
    secret = new_secret(webhook_of(flow, name))
    return flow, Caller(Client(), flow.slug, name, secret)


@pytest.fixture
def warehouse(transactional_db: None) -> None:
    add_connection("warehouse", SOURCE_DB_URL)
