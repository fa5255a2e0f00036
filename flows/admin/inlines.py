"""Nodes and edges as inlines of the flow page.

Their forms are views onto the flow file: the flow admin saves the graph as a whole through
``apply_flow_file`` once every node and edge has passed validation together. Permissions
follow the flow's: whoever may change a flow may change its graph.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.contrib.auth import get_permission_codename
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from flows import access
from flows.forms import (
    EdgeForm,
    EdgeFormSet,
    NodeFormSet,
    build_node_form,
    catalog_properties,
    config_field_name,
    policy_field_name,
    policy_properties,
)
from flows.models import Flow, FlowEdge, FlowNode
from nodes.registry import registry


class _FlowPartInline(admin.options.InlineModelAdmin):
    """Permissions of a flow's parts are the flow's own."""

    extra = 1

    def _has(self, request: HttpRequest, action: str, obj: Any = None) -> bool:
        if isinstance(obj, Flow) and action in ("view", "change"):
            return access.can(request.user, obj, action)
        opts = Flow._meta
        return request.user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}")

    def _can_edit(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._has(request, "add" if obj is None else "change", obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._can_edit(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._can_edit(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._can_edit(request, obj)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._has(request, "view", obj) or self._can_edit(request, obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # Not narrowed by global permissions: the formset takes the parts of the flow on the
        # page, which the flow admin shows only to whoever may view it (grants included).
        return admin.options.BaseModelAdmin.get_queryset(self, request)


#: Policy fields shown on one line together: the retry settings, then the time limit.
POLICY_LINES = (("max_retries", "retry_backoff_s", "retry_backoff_max_s"), ("timeout_s",))

#: Fields a viewer without change permission sees for each node.
READ_ONLY_NODE_FIELDS = ["key", "type", "config_json", "policy_json"]


def policy_lines() -> list[tuple[str, ...]]:
    """The policy's fields in lines; a property not placed in ``POLICY_LINES`` gets its own."""
    names = [p.name for p in policy_properties()]
    placed = {name for line in POLICY_LINES for name in line}
    lines = [tuple(n for n in line if n in names) for line in POLICY_LINES]
    lines += [(n,) for n in names if n not in placed]
    return [tuple(policy_field_name(n) for n in line) for line in lines if line]


class FlowNodeInline(_FlowPartInline):
    """A node: key, type from the catalog, the config form of that type, and its policy."""

    model = FlowNode
    formset = NodeFormSet
    template = "admin/edit_inline/stacked.html"
    verbose_name = "node"
    verbose_name_plural = "nodes"
    classes = ["flow-nodes"]

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        if self._can_edit(request, obj):
            kwargs["form"] = build_node_form()
        return super().get_formset(request, obj, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list[tuple[Any, Any]]:
        if not self._can_edit(request, obj):
            return [(None, {"fields": READ_ONLY_NODE_FIELDS})]
        sets: list[tuple[Any, Any]] = [(None, {"fields": [("node_key", "node_type")]})]
        for type_name, cls in registry.types().items():
            props = catalog_properties()[type_name]
            if not props:
                continue
            options = {
                "fields": [config_field_name(type_name, p.name) for p in props],
                "classes": ["node-config", f"node-config-{type_name}"],
                "description": format_html("{} Fields marked * are required.", cls.description),
            }
            sets.append((f"{cls.label or type_name} config", options))
        policy = {
            "fields": policy_lines(),
            "classes": ["node-policy"],
            "description": "How the engine retries and limits this node as a whole, whatever "
            "its type (a retry runs the node again). An empty field takes the default in grey.",
        }
        sets.append(("Retries and timeout", policy))
        return sets

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [] if self._can_edit(request, obj) else READ_ONLY_NODE_FIELDS

    @admin.display(description="config")
    def config_json(self, node: FlowNode) -> str:
        return json.dumps(node.config, ensure_ascii=False)

    @admin.display(description="retries and timeout")
    def policy_json(self, node: FlowNode) -> str:
        if not node.policy:
            return "defaults"
        # In the order of the policy's schema (the database keeps its own key order).
        rank = {p.name: i for i, p in enumerate(policy_properties())}
        ordered = sorted(node.policy.items(), key=lambda item: rank.get(item[0], len(rank)))
        return json.dumps(dict(ordered), ensure_ascii=False)


class FlowEdgeInline(_FlowPartInline):
    """An edge between two nodes of the flow; ports only for nodes with several."""

    model = FlowEdge
    fk_name = "flow"
    form = EdgeForm
    formset = EdgeFormSet
    template = "admin/edit_inline/tabular.html"
    verbose_name = "edge"
    verbose_name_plural = "edges"
    classes = ["flow-edges"]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list[tuple[Any, Any]]:
        if not self._can_edit(request, obj):
            return [(None, {"fields": ["source", "source_port", "target", "target_port"]})]
        return [(None, {"fields": ["from_node", "from_port", "to_node", "to_port"]})]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if self._can_edit(request, obj):
            return []
        return ["source", "source_port", "target", "target_port"]
