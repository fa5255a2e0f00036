"""Indexes that every take and finish of a node run wrote for nothing (decision 0048).

A node run's take and finish change its status and lease, so neither is a HOT update: each
writes a new entry in every index of the table. ``flows_noderun.run_id`` had an index of its
own beside ``noderun_unique_node`` (``run_id, node_key``), which serves every lookup by run;
``reused_from_id``, null but for reruns, had an entry per row version; ``flows_flowrun.flow_id``
had one beside ``flowrun_flow_status`` (``flow_id, status``). The foreign keys stay; only the
indexes go (dropped directly: Django would drop and re-check each foreign key).
"""

import django.db.models.deletion
from django.db import migrations, models

DROPPED = [  # (index, table, column): Django's names for the foreign keys' indexes
    ("flows_flowrun_flow_id_9cbb3a32", "flows_flowrun", "flow_id"),
    ("flows_noderun_reused_from_id_a4782972", "flows_noderun", "reused_from_id"),
    ("flows_noderun_run_id_723f44b0", "flows_noderun", "run_id"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("flows", "0016_partition_resends"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="flowrun",
                    name="flow",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="runs",
                        to="flows.flow",
                    ),
                ),
                migrations.AlterField(
                    model_name="noderun",
                    name="reused_from",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        help_text="The run whose output this node reused (reruns from a later node).",
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="flows.flowrun",
                    ),
                ),
                migrations.AlterField(
                    model_name="noderun",
                    name="run",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="node_runs",
                        to="flows.flowrun",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{index}"',
                    reverse_sql=f'CREATE INDEX "{index}" ON "{table}" ("{column}")',
                )
                for index, table, column in DROPPED
            ],
        ),
        migrations.AddIndex(
            model_name="noderun",
            index=models.Index(
                condition=models.Q(("reused_from__isnull", False)),
                fields=["reused_from"],
                name="noderun_reused_from",
            ),
        ),
    ]
