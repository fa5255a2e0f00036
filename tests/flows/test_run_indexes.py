"""The run and node-run tables keep no index that another already serves: every take and
finish of a node run writes an entry in each index of ``flows_noderun`` (decision 0048)."""

from __future__ import annotations

import pytest
from django.db import connection

from flows.models import FlowRun, NodeRun

pytestmark = [pytest.mark.usefixtures("db"), pytest.mark.embedded]


def _indexes(table: str) -> dict[str, list[str]]:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, table)
    return {
        name: facts["columns"]
        for name, facts in found.items()
        if (facts["index"] or facts["unique"]) and not facts["primary_key"] and facts["columns"]
    }


@pytest.mark.parametrize("model", [FlowRun, NodeRun])
def test_no_index_is_the_beginning_of_another(model: type[FlowRun] | type[NodeRun]) -> None:
    indexes = _indexes(model._meta.db_table)
    redundant = [
        (name, other)
        for name, columns in indexes.items()
        for other, longer in indexes.items()
        if other != name and len(longer) > len(columns) and longer[: len(columns)] == columns
    ]
    assert redundant == []


def test_a_node_run_is_written_in_four_indexes_at_most() -> None:
    """The primary key, (run, node key), the running leases (partial) and the few reused
    outputs (partial): an index more costs every take and finish a write."""
    indexes = _indexes(NodeRun._meta.db_table)
    assert sorted(indexes) == [
        "noderun_reused_from",
        "noderun_running_lease",
        "noderun_unique_node",
    ]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s",
                [NodeRun._meta.db_table],
            )
            partial = {name for name, definition in cursor.fetchall() if " WHERE " in definition}
        assert partial == {"noderun_reused_from", "noderun_running_lease"}
