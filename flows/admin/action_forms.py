"""Forms of the admin's action pages: run now, re-run, import a flow file, duplicate a flow."""

from __future__ import annotations

import io
from typing import Any

from django import forms
from django.core.files.uploadedfile import InMemoryUploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest

from flowplatform.jsondoc import (
    JSONDocumentError,
    document_size_limit,
    load_json_document,
    read_document,
)
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


class FlowFileUploadHandler(FileUploadHandler):
    """Keeps an uploaded flow file in memory, and stops reading the request as soon as the
    uploads pass the document size limit: an oversized upload costs one limit's worth of
    memory and reading, not its whole size (Django's own handlers take a whole file, to memory
    or to disk, before any size can be checked). Install it before the body is read."""

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.limit = document_size_limit()
        self.received = 0
        self.too_large = False
        self.buffer = io.BytesIO()

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.buffer = io.BytesIO()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self.received += len(raw_data)  # across every file of the request
        if self.received > self.limit:
            self.too_large = True
            raise StopUpload(connection_reset=True)
        self.buffer.write(raw_data)

    def file_complete(self, file_size: int) -> InMemoryUploadedFile:
        self.buffer.seek(0)
        return InMemoryUploadedFile(
            file=self.buffer,
            field_name=self.field_name,
            name=self.file_name,
            content_type=self.content_type,
            size=file_size,
            charset=self.charset,
            content_type_extra=self.content_type_extra,
        )


class ImportForm(forms.Form):
    """A flow file to create or update a flow from, parsed by the platform's JSON document
    rules (flowplatform/jsondoc.py): the same as the API's and ``importflow``'s."""

    file = forms.FileField(
        label="flow file", required=False, help_text="A JSON flow file, as exportflow writes."
    )

    def __init__(self, *args: Any, upload_too_large: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.upload_too_large = upload_too_large

    def clean_file(self) -> Any:
        upload = self.cleaned_data.get("file")
        limit = document_size_limit()
        if self.upload_too_large or (upload is not None and upload.size > limit):
            raise forms.ValidationError(f"the file is larger than the limit of {limit} bytes")
        if upload is None:
            raise forms.ValidationError(self.fields["file"].error_messages["required"])
        try:
            return load_json_document(read_document(upload, limit))
        except JSONDocumentError as exc:
            raise forms.ValidationError([str(p) for p in exc.problems]) from None


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
