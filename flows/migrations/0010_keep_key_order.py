"""Flow configs and version definitions keep their key order on PostgreSQL (decision 0033).

The columns become ``json`` (``jsonb`` reorders keys); existing rows convert as they are (in
the order ``jsonb`` gave them). Versions are then written in the order a version is made in
today (a node type's config fields in the order of its model) and their checksum becomes the
sha256 of that text, keys in order: an unchanged flow's next run finds its latest version
instead of making a new one. Backwards, the checksums go back to sorted keys.
"""

import hashlib
import json

from django.db import migrations

import flowplatform.jsonfields

TOP_KEYS = ("nodes", "edges", "run_timeout_s")
NODE_KEYS = ("key", "type", "config", "policy")
EDGE_KEYS = ("from", "from_port", "to", "to_port")


def ordered(value, keys):
    out = {key: value[key] for key in keys if key in value}
    out.update((key, item) for key, item in value.items() if key not in out)
    return out


def in_definition_order(definition):
    from flows.definition import NodePolicy
    from flows.flowfile import in_model_order
    from nodes.registry import registry

    data = ordered(definition, TOP_KEYS)
    nodes = []
    for node in data.get("nodes") or []:
        node = ordered(node, NODE_KEYS)
        cls = registry.get(node.get("type") or "")
        if cls is not None and isinstance(node.get("config"), dict):
            node["config"] = in_model_order(cls.Config, node["config"])
        if isinstance(node.get("policy"), dict):
            node["policy"] = in_model_order(NodePolicy, node["policy"])
        nodes.append(node)
    data["nodes"] = nodes
    data["edges"] = [ordered(edge, EDGE_KEYS) for edge in data.get("edges") or []]
    return data


def _versions(apps):
    FlowVersion = apps.get_model("flows", "FlowVersion")
    return FlowVersion, FlowVersion.objects.order_by("pk").iterator(chunk_size=500)


def order_versions(apps, schema_editor):
    FlowVersion, versions = _versions(apps)
    changed = []
    for version in versions:
        version.definition = in_definition_order(version.definition)
        text = json.dumps(version.definition)
        version.checksum = hashlib.sha256(text.encode()).hexdigest()
        changed.append(version)
        if len(changed) == 500:
            FlowVersion.objects.bulk_update(changed, ["definition", "checksum"])
            changed = []
    FlowVersion.objects.bulk_update(changed, ["definition", "checksum"])


def sorted_checksums(apps, schema_editor):
    FlowVersion, versions = _versions(apps)
    changed = []
    for version in versions:
        text = json.dumps(version.definition, sort_keys=True)
        version.checksum = hashlib.sha256(text.encode()).hexdigest()
        changed.append(version)
        if len(changed) == 500:
            FlowVersion.objects.bulk_update(changed, ["checksum"])
            changed = []
    FlowVersion.objects.bulk_update(changed, ["checksum"])


class Migration(migrations.Migration):

    dependencies = [
        ('flows', '0009_run_trace_id'),
    ]

    operations = [
        migrations.AlterField(
            model_name='flownode',
            name='config',
            field=flowplatform.jsonfields.OrderedJSONField(blank=True, default=dict, help_text='Stored as written: keys keep their order.', verbose_name='config'),
        ),
        migrations.AlterField(
            model_name='flowversion',
            name='definition',
            field=flowplatform.jsonfields.OrderedJSONField(help_text='The graph in flow-file form (keys in their order).', verbose_name='definition'),
        ),
        migrations.RunPython(order_versions, sorted_checksums, elidable=False),
    ]
