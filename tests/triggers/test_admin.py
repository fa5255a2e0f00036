"""The triggers admin: a new webhook secret is shown once, and only to who may run the flow."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from flows.flowfile import apply_flow_file
from tests.triggers.conftest import orders_flow, webhook_of

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/scheduling/flowtrigger/"


def act(client: Client, pk: int) -> str:
    page = client.post(
        CHANGELIST, {"action": "generate_secret", "_selected_action": [pk]}, follow=True
    )
    return page.content.decode()


def test_generating_a_secret_shows_it_once(admin_client: Client) -> None:
    trigger = webhook_of(apply_flow_file(orders_flow())[0], "orders-created")

    html = act(admin_client, trigger.pk)

    secret = webhook_of(trigger.flow, "orders-created").secret()
    assert secret and secret in html
    assert secret not in admin_client.get(f"{CHANGELIST}{trigger.pk}/change/").content.decode()


def test_a_user_without_run_gets_no_secret() -> None:
    trigger = webhook_of(apply_flow_file(orders_flow())[0], "orders-created")
    user = User.objects.create_user("viewer", "v@example.test", "pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=["view_flow", "change_flow"]))
    client = Client()
    client.force_login(user)

    html = act(client, trigger.pk)

    assert "needs run_flow" in html
    assert webhook_of(trigger.flow, "orders-created").encrypted_secret == ""
