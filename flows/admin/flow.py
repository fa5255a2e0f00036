"""The flow page: the flow designer (fields, nodes, edges, picture) and its actions."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from flows import access
from flows.admin import canvas
from flows.admin.access import FlowAccessInline
from flows.admin.action_forms import DuplicateForm, FlowFileUploadHandler, ImportForm, RunForm
from flows.admin.display import definition_picture, flow_picture, status_badge
from flows.admin.inlines import FlowEdgeInline, FlowNodeInline
from flows.admin_extensions import flow_inlines
from flows.flowfile import apply_flow_file, export_flow
from flows.forms import FlowForm, GraphSubmission, catalog_ports
from flows.models import Flow, FlowRun, Trigger
from flows.services import DispatchError, start_run
from flows.validation import FlowValidationError, port_schemas, validate_for_save
from nodes.builtin.sql_backends import placeholders
from nodes.registry import registry

#: Formset prefixes of the inlines that make up the graph (saved through the flow file).
GRAPH_PREFIXES = ("nodes", "edges")

#: Fields of the flow form that are also top-level keys of the flow file.
FLOW_FILE_FIELDS = ("slug", "name", "description", "run_timeout_s")

#: At most this many problems are listed in a message.
MAX_LISTED = 5


def problem_lines(exc: FlowValidationError | access.AccessDenied) -> str:
    lines = [str(p) for p in exc.problems[:MAX_LISTED]]
    if len(exc.problems) > MAX_LISTED:
        lines.append(f"… and {len(exc.problems) - MAX_LISTED} more")
    return "; ".join(lines)


def _by(author_name: str) -> str:
    return f" by {author_name}" if author_name else ""


@admin.register(Flow)
class FlowAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "node_count", "version", "last_run", "runs_link", "updated_at")
    list_display_links = ("slug", "name")
    search_fields = ("slug", "name", "description")
    form = FlowForm
    fields = FLOW_FILE_FIELDS
    actions = ["run_selected", "validate_selected"]
    formfield_overrides = {
        models.TextField: {"widget": forms.Textarea(attrs={"rows": 3, "class": "vLargeTextField"})}
    }

    @property  # type: ignore[override]
    def inlines(self) -> list[type[admin.options.InlineModelAdmin]]:
        """Nodes and edges, the inlines other apps register (schedules), the access grants."""
        return [FlowNodeInline, FlowEdgeInline, *flow_inlines(), FlowAccessInline]

    class Media:
        css = {"all": ["flows/admin.css"]}
        js = ["flows/flow_form.js"]

    # -- list ----------------------------------------------------------------------------
    def get_queryset(self, request: HttpRequest) -> QuerySet[Flow]:
        last = FlowRun.objects.filter(flow=OuterRef("pk")).order_by("-created_at")
        return access.flows_for(request.user, "view", super().get_queryset(request)).annotate(
            _nodes=Count("nodes", distinct=True),
            _last_status=Subquery(last.values("status")[:1]),
        )

    @admin.display(description="nodes", ordering="_nodes")
    def node_count(self, flow: Flow) -> int:
        return getattr(flow, "_nodes", 0)

    @admin.display(description="version")
    def version(self, flow: Flow) -> str:
        latest = flow.latest_version
        return f"v{latest.number}" if latest else "—"

    @admin.display(description="last run")
    def last_run(self, flow: Flow) -> SafeString | str:
        return status_badge(getattr(flow, "_last_status", None))

    @admin.display(description="runs")
    def runs_link(self, flow: Flow) -> SafeString:
        url = reverse("admin:flows_flowrun_changelist") + f"?flow__id__exact={flow.pk}"
        return format_html('<a href="{}">runs</a>', url)

    # -- per-flow access: global permissions or grants on the flow ----------------------
    def has_module_permission(self, request: HttpRequest) -> bool:
        return access.has_any(request.user) or super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return access.has_any(request.user, "view")
        return access.can(request.user, obj, "view")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None:
            return access.has_any(request.user, "change")
        return access.can(request.user, obj, "change")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("flows.delete_flow") and (
            obj is None or access.can(request.user, obj, "view")
        )

    def has_run_permission(self, request: HttpRequest, obj: Flow | None = None) -> bool:
        if obj is None:
            return access.has_any(request.user, "run")
        return access.can(request.user, obj, "run")

    def save_model(self, request: HttpRequest, obj: Flow, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            access.created_by(request.user, obj)

    @admin.action(description="Run selected flows now", permissions=["run"])
    def run_selected(self, request: HttpRequest, queryset: QuerySet[Flow]) -> None:
        for flow in queryset:
            self._start(request, flow, {})

    @admin.action(description="Validate selected flows")
    def validate_selected(self, request: HttpRequest, queryset: QuerySet[Flow]) -> None:
        for flow in queryset:
            problems = validate_for_save(export_flow(flow))[1]
            if problems:
                messages.error(
                    request, f"{flow.slug}: {problem_lines(FlowValidationError(problems))}"
                )
            else:
                messages.success(request, f"{flow.slug}: valid")

    # -- the designer: nodes and edges saved as one flow file ---------------------------
    def get_formset_kwargs(
        self, request: HttpRequest, obj: Flow, inline: Any, prefix: str
    ) -> dict[str, Any]:
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, FlowNodeInline | FlowEdgeInline):
            kwargs["graph"] = self._submission(request, obj)
        return kwargs

    def _submission(self, request: HttpRequest, obj: Flow) -> GraphSubmission:
        """One graph per request: both inlines validate into it."""
        graph = getattr(request, "_flow_graph", None)
        if graph is None or graph.flow is not obj:
            graph = GraphSubmission(
                obj, validate_only="_validate" in request.POST, user=request.user
            )
            request._flow_graph = graph  # type: ignore[attr-defined]
        return graph

    def save_related(
        self, request: HttpRequest, form: Any, formsets: list[Any], change: bool
    ) -> None:
        graph: GraphSubmission | None = getattr(request, "_flow_graph", None)
        if graph is None or not graph.validated:
            # No graph was on the page (or checked): leave the stored one as it is.
            for formset in formsets:
                if not isinstance(formset.instance, Flow) or formset.prefix not in GRAPH_PREFIXES:
                    self.save_formset(request, form, formset, change=change)
            return
        before = form.instance.latest_version
        # The flow's own fields come from its form, the rest from the submitted graph. Both
        # were validated with the formsets: this raises only on a race.
        own = {name: getattr(form.instance, name) for name in FLOW_FILE_FIELDS}
        flow, _ = apply_flow_file({**graph.flow_file(), **own})
        after = flow.latest_version
        graph.version_changed = before is None or after is None or before.pk != after.pk
        for formset in formsets:
            if formset in (graph.nodes, graph.edges):
                formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
            else:
                self.save_formset(request, form, formset, change=change)
        if after is not None and graph.version_changed:
            messages.info(request, f"The graph is saved as version {after.number}.")

    def construct_change_message(
        self, request: HttpRequest, form: Any, formsets: Any, add: bool = False
    ) -> list[dict[str, Any]]:
        message = super().construct_change_message(request, form, formsets, add)
        graph = getattr(request, "_flow_graph", None)
        if not add and graph is not None and getattr(graph, "version_changed", False):
            message.append({"changed": {"fields": ["graph"]}})
        return message

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Flow | None = None,
    ) -> HttpResponse:
        graph: GraphSubmission | None = getattr(request, "_flow_graph", None)
        if graph is not None and graph.validated:
            context["flow_graph"] = definition_picture(graph.flow_file())
            context["graph_caption"] = "as submitted (not saved)"
            if graph.validate_only and not context.get("errors"):
                messages.success(request, "No problems found. The flow is not saved yet.")
        elif obj is not None:
            context["flow_graph"] = flow_picture(obj)
            latest = obj.latest_version
            context["graph_caption"] = (
                f"saved, version {latest.number}{_by(latest.author_name)}" if latest else "saved"
            )
            context["stored_problems"] = [str(p) for p in validate_for_save(export_flow(obj))[1]]
        context["node_catalog"] = catalog_ports()
        # The output ports a branch (ports from its config) has in the graph shown.
        shown = graph.flow_file() if graph is not None and graph.validated else None
        if shown is None and obj is not None:
            shown = export_flow(obj)
        context["node_ports"] = _config_ports(shown) if shown else {}
        # The canvas is the page's view unless the form is asked for or comes back with errors.
        context["show_form"] = "form" in request.GET or request.method == "POST"
        context["canvas"] = canvas.canvas_context(
            request,
            obj,
            self.has_change_permission(request, obj) if obj else self.has_add_permission(request),
        )
        context["can_run"] = obj is not None and self.has_run_permission(request, obj)
        context["can_duplicate"] = obj is not None and self.has_add_permission(request)
        return super().render_change_form(request, context, add, change, form_url, obj)

    # -- actions with their own pages ----------------------------------------------------
    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            # CSRF is checked inside, once the upload handler is in place.
            path("import/", wrap(csrf_exempt(self.import_view)), name="flows_flow_import"),
            path("canvas/validate/", wrap(canvas.validate_view), name="flows_flow_canvas_validate"),
            path("canvas/layout/", wrap(canvas.layout_view), name="flows_flow_canvas_layout"),
            path("canvas/save/", wrap(canvas.save_view), name="flows_flow_canvas_save"),
            path("<int:object_id>/run/", wrap(self.run_view), name="flows_flow_run"),
            path("<int:object_id>/export/", wrap(self.export_view), name="flows_flow_export"),
            path(
                "<int:object_id>/duplicate/",
                wrap(self.duplicate_view),
                name="flows_flow_duplicate",
            ),
            *super().get_urls(),
        ]

    def _page(self, request: HttpRequest, template: str, **context: Any) -> TemplateResponse:
        return TemplateResponse(
            request,
            f"admin/flows/flow/{template}",
            {**self.admin_site.each_context(request), "opts": self.opts, **context},
        )

    def _flow(self, request: HttpRequest, object_id: int) -> Flow:
        flow = get_object_or_404(access.flows_for(request.user), pk=object_id)
        if not self.has_view_or_change_permission(request, flow):
            raise PermissionDenied
        return flow

    def _change_url(self, flow: Flow) -> str:
        return reverse("admin:flows_flow_change", args=[flow.pk])

    def _start(self, request: HttpRequest, flow: Flow, params: dict[str, Any]) -> FlowRun | None:
        try:
            run = start_run(flow, params, trigger=Trigger.MANUAL, user=request.user)
        except FlowValidationError as exc:
            messages.error(request, f"{flow.slug} cannot run: {problem_lines(exc)}")
            return None
        except access.AccessDenied as exc:
            messages.error(request, f"{flow.slug} cannot run: {problem_lines(exc)}")
            return None
        except DispatchError as exc:
            messages.error(request, str(exc))
            return None
        url = reverse("admin:flows_flowrun_change", args=[run.pk])
        messages.success(
            request, format_html('Run <a href="{}">{}</a> of {} started.', url, run.pk, flow.slug)
        )
        return run

    def run_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        flow = self._flow(request, object_id)
        if not self.has_run_permission(request, flow):
            raise PermissionDenied
        form = RunForm(request.POST or None, initial={"params": {}})
        if request.method == "POST" and form.is_valid():
            run = self._start(request, flow, form.cleaned_data["params"])
            if run is None:
                return HttpResponseRedirect(self._change_url(flow))
            return HttpResponseRedirect(reverse("admin:flows_flowrun_change", args=[run.pk]))
        used = sorted(
            {
                name
                for node in flow.nodes.filter(type="sql_query")
                for name in placeholders(str(node.config.get("query", "")))
            }
        )
        return self._page(
            request,
            "run.html",
            title=f"Run {flow.name}",
            original=flow,
            form=form,
            query_params=used,
        )

    def export_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        flow = self._flow(request, object_id)
        body = json.dumps(export_flow(flow), indent=2, ensure_ascii=False) + "\n"
        response = HttpResponse(body, content_type="application/json; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{flow.slug}.json"'
        return response

    def duplicate_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        flow = self._flow(request, object_id)
        if not self.has_add_permission(request):
            raise PermissionDenied
        initial = {"slug": f"{flow.slug}-copy"[:100], "name": f"{flow.name} (copy)"[:200]}
        form = DuplicateForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            slug = form.cleaned_data["slug"]
            if Flow.objects.filter(slug=slug).exists():
                form.add_error("slug", f"a flow '{slug}' already exists")
            else:
                # Schedules and triggers stay with the original: a copy must not fire twice.
                data = {
                    k: v for k, v in export_flow(flow).items() if k not in ("schedules", "triggers")
                }
                data.update(slug=slug, name=form.cleaned_data["name"])
                try:
                    with transaction.atomic():
                        access.check_flow_write(request.user, None, data)
                        copy, _ = apply_flow_file(data)
                        access.created_by(request.user, copy)
                except (FlowValidationError, access.AccessDenied) as exc:
                    messages.error(request, f"cannot duplicate: {problem_lines(exc)}")
                else:
                    messages.success(request, f"{flow.slug} duplicated as {copy.slug}.")
                    return HttpResponseRedirect(self._change_url(copy))
        return self._page(
            request, "duplicate.html", title=f"Duplicate {flow.name}", original=flow, form=form
        )

    def import_view(self, request: HttpRequest) -> HttpResponse:
        # The handler must be in place before anything reads the body, the CSRF check
        # included: Django's documented pattern for per-view upload handlers.
        uploads = FlowFileUploadHandler(request)
        request.upload_handlers = [uploads]
        return csrf_protect(self._import_page)(request, uploads)

    def _import_page(self, request: HttpRequest, uploads: FlowFileUploadHandler) -> HttpResponse:
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        posted = request.method == "POST"
        form = ImportForm(
            request.POST if posted else None,
            request.FILES if posted else None,
            upload_too_large=uploads.too_large,
        )
        problems: list[str] = []
        if posted and form.is_valid():
            data = form.cleaned_data["file"]
            try:
                with transaction.atomic():
                    flow, created = access.apply_as(request.user, data)
            except (FlowValidationError, access.AccessDenied) as exc:
                problems = [str(p) for p in exc.problems]
            else:
                version = flow.latest_version
                verb = "created" if created else "updated"
                number = version.number if version else 0
                messages.success(request, f"Flow {flow.slug} {verb} (version {number}).")
                return HttpResponseRedirect(self._change_url(flow))
        return self._page(
            request, "import.html", title="Import a flow file", form=form, problems=problems
        )


def _config_ports(document: dict[str, Any]) -> dict[str, list[str]]:
    """The output ports of the nodes of a flow file whose ports come from their config."""
    dynamic = {
        node.get("key")
        for node in document.get("nodes") or []
        if (cls := registry.get(str(node.get("type")))) is not None and cls.dynamic_outputs
    }
    return {
        key: [port["name"] for port in entry["ports"]]
        for key, entry in port_schemas(document).items()
        if key in dynamic and entry.get("ports")
    }
