"""Forms of the admin's action pages: run now, re-run, import a flow file, duplicate a flow."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from flows.graph import Graph
from flows.models import FlowRun, NodeStatus


class RunForm(forms.Form):
    """Parameters of a manual run."""

    params = forms.JSONField(
        label="params",
        required=False,
        initial=dict,
        help_text="A JSON object; the run's params override the nodes' own, e.g. {\"min_id\": 1000}.",
        widget=forms.Textarea(attrs={"rows": 4, "class": "vLargeTextField config-json"}),
    )

    def clean_params(self) -> dict[str, Any]:
        params = self.cleaned_data.get("params") or {}
        if not isinstance(params, dict):
            raise forms.ValidationError("params must be a JSON object")
        return params


#: Largest flow file the import page reads.
MAX_FLOW_FILE_BYTES = 2 * 1024 * 1024


class ImportForm(forms.Form):
    """A flow file to create or update a flow from."""

    file = forms.FileField(label="flow file", help_text="A JSON flow file, as exportflow writes.")

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_FLOW_FILE_BYTES:
            raise forms.ValidationError(
                f"the file is larger than {MAX_FLOW_FILE_BYTES // (1024 * 1024)} MiB"
            )
        try:
            return json.loads(upload.read().decode("utf-8"))
        except UnicodeDecodeError:
            raise forms.ValidationError("not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None


class DuplicateForm(forms.Form):
    """The identity of a copy of a flow."""

    slug = forms.SlugField(max_length=100, help_text="Identifier of the copy.")
    name = forms.CharField(max_length=200)


class RerunForm(forms.Form):
    """Where a re-run starts and which version it runs; blank keeps the service's default."""

    from_node = forms.ChoiceField(
        label="from node",
        required=False,
        help_text="This node and every node after it run again; the others reuse this run's "
        "output, so they must have succeeded in it.",
    )
    latest = forms.BooleanField(
        label="use the latest version",
        required=False,
        help_text="Run the flow's current graph instead of this run's version. "
        "Nodes that are reused must be unchanged in it.",
    )

    def __init__(self, *args: Any, run: FlowRun, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["from_node"].choices = rerun_choices(run)
        latest = run.flow.latest_version
        if latest is not None and latest.pk != run.version_id:
            versions = (
                f" This run used version {run.version.number}; the latest is {latest.number}."
            )
            self.fields["latest"].help_text += versions

    def clean_from_node(self) -> str | None:
        return self.cleaned_data.get("from_node") or None


def rerun_choices(run: FlowRun) -> list[tuple[str, str]]:
    """The default (first failed node, or all) then each node with the nodes that follow it."""
    node_runs = list(run.node_runs.order_by("position", "id"))
    failed = next((n.node_key for n in node_runs if n.status == NodeStatus.FAILED), None)
    default = f"the first failed node, {failed}" if failed else "all nodes"
    graph = Graph.from_definition(run.version.definition)
    order = {n.node_key: n.position for n in node_runs}
    choices = [("", f"default: {default}")]
    for node in node_runs:
        key = node.node_key
        after = sorted(
            graph.descendants(key) if key in graph.keys else (), key=lambda k: order.get(k, 0)
        )
        choices.append((key, f"{key} (then {', '.join(after)})" if after else key))
    return choices
