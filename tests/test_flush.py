"""The flush after each committed-data test (``transactional_db``, ``worker``): the next test
starts on empty platform tables, with the content types and permissions of every model.

The two tests run in this order (pytest keeps a module's order): the first leaves rows in
tables tied by foreign keys, and an audit entry (append-only); the second finds none.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.db import connection

from flowplatform.audit.models import Action, AuditEntry
from flows.flowfile import apply_flow_file
from flows.models import FlowRun, NodeRun
from tests.conftest import KEPT_BY_FLUSH


def test_a_committed_data_test_leaves_rows_behind(
    transactional_db: None, example_connections: None, minimal_flow: dict[str, Any]
) -> None:
    flow, _ = apply_flow_file(minimal_flow)
    run = FlowRun.objects.create(flow=flow, version=flow.versions.get(), trigger="api")
    NodeRun.objects.create(run=run, node_key="orders", node_type="sql_query")
    user = User.objects.create_user("left-behind")
    group = Group.objects.create(name="left-behind")
    group.permissions.set(Permission.objects.filter(codename="run_flow"))
    user.groups.add(group)
    AuditEntry.objects.create(actor=user, source="api", action=Action.RUN, object_type="flows.flow")
    assert AuditEntry.objects.exists() and NodeRun.objects.exists()


@pytest.mark.usefixtures("transactional_db")
def test_the_next_test_finds_every_platform_table_empty_and_the_permissions_whole() -> None:
    tables = connection.introspection.django_table_names(only_existing=True)
    with connection.cursor() as cursor:
        rows = {}
        for table in sorted(set(tables) - KEPT_BY_FLUSH):
            cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")
            rows[table] = cursor.fetchone()[0]
    assert {table: count for table, count in rows.items() if count} == {}
    # What the post_migrate signal after a flush makes: every model's content type and its
    # default and declared permissions, once each.
    for model in apps.get_models():
        content_type = ContentType.objects.get_for_model(model, for_concrete_model=False)
        codenames = set(
            Permission.objects.filter(content_type=content_type).values_list("codename", flat=True)
        )
        meta = model._meta
        expected = {f"{action}_{meta.model_name}" for action in meta.default_permissions}
        expected |= {codename for codename, _ in meta.permissions}
        assert expected <= codenames, (model, expected - codenames)
    assert ContentType.objects.count() == len(
        {(m._meta.app_label, m._meta.model_name) for m in apps.get_models()}
    )
