"""Writing a flow's alerts: ``change`` on the flow, and the use of the webhook's connection."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.test import APIClient

from flowplatform.alerts.models import FlowAlert
from tests.flows.helpers import add_connection

pytestmark = pytest.mark.django_db

A = "/api/v1/flows/alpha/"


@pytest.fixture
def pager(actors: dict[str, User]) -> Group:
    """``pager`` (a webhook) usable by the group ``oncall`` only."""
    group = Group.objects.create(name="oncall")
    add_connection("pager", "https://pager.example.test/hook").allowed_groups.add(group)
    return group


def body(minimal_flow: dict[str, Any]) -> dict[str, Any]:
    alerts = [{"on": ["failed"], "connection": "pager"}]
    return {**copy.deepcopy(minimal_flow), "slug": "alpha", "name": "Alpha", "alerts": alerts}


def test_alerts_naming_a_limited_connection_need_its_use(
    apis: dict[str, APIClient], pager: Group, actors: dict[str, User], minimal_flow: dict[str, Any]
) -> None:
    response = apis["editor"].put(A, body(minimal_flow), format="json")
    assert response.status_code == 403, response.content[:300]
    assert response.json()["errors"] == [
        {
            "path": "alerts[0].connection",
            "node": None,
            "message": "you may not use connection 'pager' (it is limited to some groups)",
        }
    ]
    assert not FlowAlert.objects.exists()
    actors["editor"].groups.add(pager)
    assert apis["editor"].put(A, body(minimal_flow), format="json").status_code == 200
    assert FlowAlert.objects.get().connection == "pager"


def test_alerts_cannot_be_written_without_change_on_the_flow(
    apis: dict[str, APIClient], pager: Group, actors: dict[str, User], minimal_flow: dict[str, Any]
) -> None:
    actors["runner"].groups.add(pager)
    assert apis["runner"].put(A, body(minimal_flow), format="json").status_code == 403
    assert not FlowAlert.objects.exists()
