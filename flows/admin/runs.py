"""The run monitor: runs with status badges and filters; a run page with its node runs; cancel
and re-run (from a chosen node, on the run's version or the latest)."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.views.decorators.http import require_http_methods, require_POST

from flows import access
from flows.admin.action_forms import RerunForm
from flows.admin.display import duration, run_picture, status_badge
from flows.admin.flow import problem_lines
from flows.counts import DEFAULT_LABELS, count_labels, counted
from flows.engine.handoff import first_records
from flows.models import ACTIVE_RUN_STATUSES, FlowRun, NodeRun
from flows.sections import run_details
from flows.services import DispatchError, RerunError, cancel_run, rerun
from flows.validation import FlowValidationError
from nodes.jsonbody import dumps
from nodes.registry import registry
from nodes.sdk import NodeError

logger = logging.getLogger(__name__)

#: Records the "Output" page of a node shows.
OUTPUT_RECORDS = 100

#: Seconds between reloads of the page of a run that is still going.
REFRESH_S = 2


@admin.register(FlowRun)
class FlowRunAdmin(admin.ModelAdmin):
    list_display = (
        "run",
        "flow",
        "run_status",
        "trigger",
        "version_number",
        "created_at",
        "started_at",
        "run_duration",
    )
    list_filter = (
        ("flow", admin.RelatedOnlyFieldListFilter),
        "status",
        "trigger",
        ("created_at", admin.DateFieldListFilter),
    )
    list_select_related = ("flow", "version")
    date_hierarchy = "created_at"
    search_fields = ("flow__slug", "error")
    actions = ["cancel_selected", "rerun_selected"]
    fields = (
        "flow",
        "version_number",
        "version_author",
        "run_status",
        "trigger",
        "params_json",
        "interval_start",
        "interval_end",
        "created_at",
        "started_at",
        "finished_at",
        "run_duration",
        "error",
        "trace",
    )
    readonly_fields = fields

    class Media:
        css = {"all": ["flows/admin.css"]}

    @admin.display(description="run", ordering="created_at")
    def run(self, run: FlowRun) -> str:
        return str(run.pk)[:8]

    @admin.display(description="status", ordering="status")
    def run_status(self, run: FlowRun) -> SafeString | str:
        return status_badge(run.status)

    @admin.display(description="version", ordering="version__number")
    def version_number(self, run: FlowRun) -> str:
        return f"v{run.version.number}"

    @admin.display(description="version author")
    def version_author(self, run: FlowRun) -> str:
        return run.version.author_name or "—"

    @admin.display(description="duration")
    def run_duration(self, run: FlowRun) -> str:
        return duration(run.duration_s)

    @admin.display(description="trace")
    def trace(self, run: FlowRun) -> SafeString | str:
        """The trace id, a link to the trace when FLOWPLATFORM_TRACE_URL_TEMPLATE is set."""
        if not run.trace_id:
            return "—"
        if url := run.trace_url:
            return format_html('<a href="{}" rel="noopener">{}</a>', url, run.trace_id)
        return run.trace_id

    @admin.display(description="params")
    def params_json(self, run: FlowRun) -> str:
        return json.dumps(run.params, ensure_ascii=False)

    # -- runs are records: read-only, started and stopped through the services ----------
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    # -- runs follow their flow's access ------------------------------------------------
    def get_queryset(self, request: HttpRequest) -> QuerySet[FlowRun]:
        return access.runs_for(request.user, super().get_queryset(request))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return access.has_any(request.user) or super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return access.sees_runs(request.user, obj.flow if obj is not None else None)

    def has_run_permission(self, request: HttpRequest, obj: FlowRun | None = None) -> bool:
        if obj is None:
            return access.has_any(request.user, "run")
        return access.can(request.user, obj.flow, "run")

    @admin.action(description="Cancel selected runs", permissions=["run"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[FlowRun]) -> None:
        runs = queryset.filter(flow__in=access.flows_for(request.user, "run"))
        cancelled = sum(cancel_run(run) for run in runs)
        messages.success(request, f"{cancelled} run(s) cancelled.")

    @admin.action(description="Re-run selected runs", permissions=["run"])
    def rerun_selected(self, request: HttpRequest, queryset: QuerySet[FlowRun]) -> None:
        runs = queryset.filter(flow__in=access.flows_for(request.user, "run"))
        for run in runs.select_related("flow", "version"):
            self._rerun(request, run)

    def _rerun(
        self, request: HttpRequest, run: FlowRun, from_node: str | None = None, latest: bool = False
    ) -> FlowRun | None:
        try:
            new = rerun(run, from_node=from_node, latest=latest, user=request.user)
        except (FlowValidationError, DispatchError, RerunError, access.AccessDenied) as exc:
            text = (
                problem_lines(exc)
                if isinstance(exc, FlowValidationError | access.AccessDenied)
                else str(exc)
            )
            messages.error(request, f"cannot re-run {run.pk}: {text}")
            return None
        url = reverse("admin:flows_flowrun_change", args=[new.pk])
        messages.success(request, format_html('Re-run started: <a href="{}">{}</a>.', url, new.pk))
        return new

    # -- the run page ----------------------------------------------------------------------
    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("<uuid:object_id>/cancel/", wrap(self.cancel_view), name="flows_flowrun_cancel"),
            path("<uuid:object_id>/rerun/", wrap(self.rerun_view), name="flows_flowrun_rerun"),
            path(
                "<uuid:object_id>/output/<str:node_key>/",
                wrap(self.output_view),
                name="flows_flowrun_output",
            ),
            *super().get_urls(),
        ]

    def _run_for_action(self, request: HttpRequest, object_id: Any) -> FlowRun:
        runs = self.get_queryset(request).select_related("flow", "version")
        run = get_object_or_404(runs, pk=object_id)
        if not (self.has_view_permission(request, run) and self.has_run_permission(request, run)):
            raise PermissionDenied
        return run

    @staticmethod
    def _page_of(run: FlowRun) -> str:
        return reverse("admin:flows_flowrun_change", args=[run.pk])

    def cancel_view(self, request: HttpRequest, object_id: Any) -> HttpResponse:
        return require_POST(self._cancel)(request, object_id)

    def _cancel(self, request: HttpRequest, object_id: Any) -> HttpResponse:
        run = self._run_for_action(request, object_id)
        if cancel_run(run):
            messages.success(
                request, "The run is cancelled; running nodes stop at their next batch."
            )
        else:
            messages.warning(request, f"The run had already finished ({run.status}).")
        return HttpResponseRedirect(self._page_of(run))

    def rerun_view(self, request: HttpRequest, object_id: Any) -> HttpResponse:
        return require_http_methods(["GET", "POST"])(self._rerun_page)(request, object_id)

    def _rerun_page(self, request: HttpRequest, object_id: Any) -> HttpResponse:
        """GET: choose the node to start from and the version; POST: start the re-run."""
        run = self._run_for_action(request, object_id)
        # A bare POST (no fields) is valid too: it re-runs with the service's defaults.
        form = RerunForm(request.POST if request.method == "POST" else None, run=run)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            new = self._rerun(request, run, data["from_node"], data["latest"])
            if new is not None:
                return HttpResponseRedirect(self._page_of(new))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Re-run {str(run.pk)[:8]} of {run.flow.slug}",
            "run": run,
            "run_url": self._page_of(run),
            "form": form,
            "node_runs": [_node_row(n) for n in run.node_runs.order_by("position", "id")],
        }
        return TemplateResponse(request, "admin/flows/flowrun/rerun.html", context)

    def output_view(self, request: HttpRequest, object_id: Any, node_key: str) -> HttpResponse:
        """The first records a node of the run produced, read from flow-data storage (reading a
        flow's data needs the run right, as producing it does)."""
        run = self._run_for_action(request, object_id)
        node_run = get_object_or_404(run.node_runs, node_key=node_key)
        records: list[dict[str, Any]] = []
        problem = ""
        if not node_run.output_ref:
            problem = f"Node '{node_key}' stored no output in this run ({node_run.status})."
        else:
            try:
                records = first_records(node_run.output_ref, OUTPUT_RECORDS)
            except NodeError as exc:  # a source's files read again had changed since
                logger.info("output %s of run %s unreadable: %s", node_key, run.pk, exc)
                problem = f"The output cannot be read again: {exc.message}"
            except (OSError, ValueError) as exc:
                logger.info("output %s of run %s unreadable: %s", node_key, run.pk, exc)
                problem = (
                    "The run's data is no longer retained (purged after the run, or removed "
                    "with manage.py purgerundata)."
                )
        columns = list(dict.fromkeys(name for record in records for name in record))
        cls = registry.get(node_run.node_type)
        ports = ", ".join(node_run.rows_by_port or [p.name for p in cls.outputs]) if cls else "out"
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Output of {node_key} — run {str(run.pk)[:8]} of {run.flow.slug}",
            "run": run,
            "run_url": self._page_of(run),
            "node_run": node_run,
            "ports": ports,
            "problem": problem,
            "limit": OUTPUT_RECORDS,
            "columns": columns,
            "rows": [[_cell(record.get(c)) for c in columns] for record in records],
        }
        return TemplateResponse(request, "admin/flows/flowrun/output.html", context)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: FlowRun | None = None,
    ) -> HttpResponse:
        if obj is not None:
            node_runs = list(obj.node_runs.order_by("position", "id"))
            context.update(
                run_graph=run_picture(obj),
                node_runs=[_node_row(n) for n in node_runs],
                is_active=obj.status in ACTIVE_RUN_STATUSES,
                can_run=self.has_run_permission(request, obj),
                refresh_s=REFRESH_S,
                flow_url=reverse("admin:flows_flow_change", args=[obj.flow_id]),
                alerts=run_details(obj).get("alerts", []),
            )
        return super().render_change_form(request, context, add, change, form_url, obj)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return dumps(value)


def _node_row(node: NodeRun) -> dict[str, Any]:
    seconds = node.duration_ms / 1000 if node.duration_ms is not None else None
    reused = node.reused_from_id
    return {
        "node": node,
        "badge": status_badge(node.status),
        "duration": duration(seconds),
        "error_line": (node.error.splitlines() or [""])[0],
        "reused_url": reverse("admin:flows_flowrun_change", args=[reused]) if reused else "",
        "reused_label": str(reused)[:8] if reused else "",
        "has_output": bool(node.output_ref),
        "rows_in": _count(node.node_type, node.rows_in, 0),
        "rows_out": _count(node.node_type, node.rows_out, 1),
        "ports": [(port, f"{rows:,}") for port, rows in (node.rows_by_port or {}).items()],
        "partitions": [
            {
                **part,
                "badge": status_badge(part["status"]),
                "rows_in": _count(node.node_type, part["rows_in"], 0),
                "rows_out": _count(node.node_type, part["rows_out"], 1),
                "duration": duration(
                    part["duration_ms"] / 1000 if part["duration_ms"] is not None else None
                ),
            }
            for part in node.partition_summaries()
        ],
    }


def _count(node_type: str, value: int, which: int) -> str:
    """A count for the run page: the number alone, or with what it counts when the node type
    names it (``12 records sent``, ``1 request``)."""
    labels = count_labels(node_type)
    return f"{value:,}" if labels == DEFAULT_LABELS else counted(value, labels[which])
