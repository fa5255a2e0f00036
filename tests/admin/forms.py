"""Submit admin forms as a browser would: from a flow file, or from the page as rendered."""

from __future__ import annotations

from typing import Any

from django.contrib.admin import site
from django.forms import BaseForm, BaseFormSet

from flows.admin import FlowEdgeInline, FlowNodeInline
from flows.config_forms import to_initial
from flows.forms import catalog_properties, config_field_name, policy_field_name, policy_properties
from flows.models import Flow


def other_inline_prefixes() -> list[str]:
    """Prefixes of the flow page's inlines besides nodes and edges (e.g. schedules)."""
    flow_admin = site._registry[Flow]
    return [
        field.remote_field.get_accessor_name(model=False)
        for inline in flow_admin.inlines
        if inline not in (FlowNodeInline, FlowEdgeInline)
        for field in inline.model._meta.fields
        if field.is_relation and field.related_model is Flow
    ]


def flow_post_data(flow: dict[str, Any], **extra: str) -> dict[str, Any]:
    """The add-page POST for a flow file: one node form per node, one edge form per edge."""
    data: dict[str, Any] = {
        **{k: v for prefix in other_inline_prefixes() for k, v in management(prefix, 0).items()},
        "slug": flow["slug"],
        "name": flow["name"],
        "description": flow.get("description", ""),
        "run_timeout_s": str(flow.get("run_timeout_s") or ""),
        **management("nodes", len(flow["nodes"])),
        **management("edges", len(flow["edges"])),
        "_save": "Save",
    }
    for index, node in enumerate(flow["nodes"]):
        data[f"nodes-{index}-node_key"] = node["key"]
        data[f"nodes-{index}-node_type"] = node["type"]
        for prop in catalog_properties().get(node["type"], ()):
            value = to_initial(prop, node["config"])
            name = f"nodes-{index}-{config_field_name(node['type'], prop.name)}"
            if value is True:
                data[name] = "on"
            elif value not in (None, False):
                data[name] = value
        for prop in policy_properties():
            value = to_initial(prop, node.get("policy") or {})
            data[f"nodes-{index}-{policy_field_name(prop.name)}"] = value or ""
    for index, edge in enumerate(flow["edges"]):
        data[f"edges-{index}-from_node"] = edge["from"]
        data[f"edges-{index}-to_node"] = edge["to"]
        data[f"edges-{index}-from_port"] = edge.get("from_port", "")
        data[f"edges-{index}-to_port"] = edge.get("to_port", "")
    data.update(extra)
    return data


def management(prefix: str, total: int, initial: int = 0) -> dict[str, str]:
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def page_post_data(response: Any) -> dict[str, Any]:
    """What the rendered change page submits unchanged (main form and every inline)."""
    data: dict[str, Any] = {"_save": "Save"}
    data.update(_form_values(response.context["adminform"].form))
    for inline in response.context["inline_admin_formsets"]:
        formset: BaseFormSet = inline.formset
        data.update(_form_values(formset.management_form))
        for form in formset.forms:
            data.update(_form_values(form))
    return data


def _form_values(form: BaseForm) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in form.fields:
        bound = form[name]
        value = bound.value()
        widget_value = bound.field.widget.format_value(value)
        if isinstance(widget_value, list):  # selects format to a list of selected values
            widget_value = widget_value[0] if widget_value else ""
        if isinstance(value, bool):
            if value:
                values[bound.html_name] = "on"
        elif value is not None:
            values[bound.html_name] = "" if widget_value is None else widget_value
    return values
