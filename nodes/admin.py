"""Admin for connections (secrets write-only, "Test connection") and the node catalog page."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from nodes.models import Connection
from nodes.probe import probe
from nodes.registry import registry
from nodes.rolecheck import check_and_store
from nodes.urls import ConnectionURLError, validate_url


class SecretInput(forms.PasswordInput):
    """Never renders a value: what is stored (or was typed) stays out of the page."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__({"autocomplete": "new-password", **(attrs or {})}, render_value=False)


class SecretTextarea(forms.Textarea):
    def format_value(self, value: Any) -> None:
        return None


def parse_headers(text: str) -> dict[str, str]:
    """``Name: value`` per line (``Name=value`` is accepted too, as on the command line)."""
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        sep = ":" if ":" in line else "="
        name, found, value = line.partition(sep)
        if not found or not name.strip():
            raise forms.ValidationError(f"line {number}: write one 'Name: value' per line")
        headers[name.strip()] = value.strip()
    return headers


class ConnectionForm(forms.ModelForm):
    """URL and headers are write-only: left blank on edit, the stored ones are kept."""

    url = forms.CharField(
        label="URL",
        required=False,
        strip=True,
        widget=SecretInput(attrs={"class": "vTextField"}),
        help_text="postgresql://user:password@host:5432/db, mysql://user:password@host:3306/db, "
        "sqlite:///path/to/file.db, https://api.example.com, file:///dir or "
        "s3://key:secret@bucket/prefix. Stored encrypted and never shown again; "
        "leave blank to keep the current one. A URL to another scheme, host or port removes "
        "the stored headers: give the headers again in the same change to keep any.",
    )
    headers = forms.CharField(
        label="headers",
        required=False,
        widget=SecretTextarea(attrs={"rows": 3, "class": "vLargeTextField", "autocomplete": "off"}),
        help_text="HTTP headers sent with every request, one 'Name: value' per line "
        "(e.g. Authorization: Bearer …). Replaces all current headers; leave blank to keep them "
        "(unless the URL moves to another scheme, host or port: then they are removed).",
    )
    clear_headers = forms.BooleanField(label="remove all headers", required=False)

    class Meta:
        model = Connection
        fields = ["name", "description", "allowed_groups"]

    def clean_url(self) -> str:
        url = self.cleaned_data.get("url", "")
        if not url:
            if self.instance.pk is None:
                raise forms.ValidationError("a new connection needs a URL")
            return ""
        try:
            return validate_url(url)
        except ConnectionURLError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_headers(self) -> dict[str, str]:
        return parse_headers(self.cleaned_data.get("headers", ""))

    #: Whether the last save removed stored headers (the URL moved to another destination).
    headers_dropped = False

    def save(self, commit: bool = True) -> Connection:
        connection: Connection = super().save(commit=False)
        if self.cleaned_data.get("url"):
            self.headers_dropped = connection.set_url(self.cleaned_data["url"])
        if self.cleaned_data.get("headers"):
            connection.set_headers(self.cleaned_data["headers"])
        elif self.cleaned_data.get("clear_headers"):
            connection.set_headers({})
        if commit:
            connection.save()
        return connection


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    form = ConnectionForm
    list_display = ("name", "scheme", "display_url", "header_list", "updated_at")
    search_fields = ("name", "description")
    readonly_fields = (
        "scheme",
        "display_url",
        "header_list",
        "role_check_report",
        "created_at",
        "updated_at",
    )
    actions = ["test_selected"]
    filter_horizontal = ("allowed_groups",)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> list[tuple[Any, Any]]:
        secrets = ["url", "headers"] + (["clear_headers"] if obj is not None else [])
        stored = ["scheme", "display_url", "header_list"] if obj is not None else []
        if obj is not None and obj.scheme != "http" and obj.scheme != "https":
            stored.append("role_check_report")
        return [
            (None, {"fields": ["name", "description", "allowed_groups"]}),
            ("Secrets (write-only)", {"fields": secrets}),
            *([("Stored", {"fields": stored})] if stored else []),
        ]

    def save_model(self, request: HttpRequest, obj: Connection, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if getattr(form, "headers_dropped", False):
            messages.warning(
                request,
                f"{obj.name}: the URL moved to another scheme, host or port, so the stored "
                "headers were removed; enter them again if the new destination needs them.",
            )

    @admin.display(description="headers")
    def header_list(self, connection: Connection) -> str:
        return ", ".join(connection.header_names) or "—"

    @admin.display(description="role check")
    def role_check_report(self, connection: Connection) -> str:
        """The findings of the last role check (Test connection, manage.py checkconnections)."""
        found = connection.role_check or {}
        if not found:
            return "not checked yet: use Test connection or manage.py checkconnections"
        warnings = found.get("warnings") or []
        when = str(found.get("checked_at", ""))[:19].replace("T", " ")
        if not warnings:
            return format_html("OK: {} <small>(checked {} UTC)</small>", found["summary"], when)
        items = format_html_join("", '<li class="fp-warning">{}</li>', ((w,) for w in warnings))
        return format_html("<ul>{}</ul><small>checked {} UTC</small>", items, when)

    @admin.action(description="Test selected connections", permissions=["change"])
    def test_selected(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        for connection in queryset:
            self._report(request, connection)

    @staticmethod
    def _report(request: HttpRequest, connection: Connection) -> None:
        result = probe(connection)
        level = messages.SUCCESS if result.ok else messages.ERROR
        verdict = "OK" if result.ok else "failed"
        messages.add_message(request, level, f"{connection.name}: {verdict} — {result.message}")
        if result.ok and connection.scheme not in ("http", "https"):
            check_and_store(connection)  # its findings show on the connection's page

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("catalog/", wrap(self.catalog_view), name="nodes_catalog"),
            path("<int:object_id>/test/", wrap(self.test_view), name="nodes_connection_test"),
            *super().get_urls(),
        ]

    def test_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        return require_POST(self._test)(request, object_id)

    def _test(self, request: HttpRequest, object_id: int) -> HttpResponse:
        connection = get_object_or_404(Connection, pk=object_id)
        # Testing makes the platform connect with the stored secrets: a change, not a view.
        if not self.has_change_permission(request, connection):
            raise PermissionDenied
        self._report(request, connection)
        return HttpResponseRedirect(reverse("admin:nodes_connection_change", args=[object_id]))

    def catalog_view(self, request: HttpRequest) -> HttpResponse:
        """Every node type: ports and config fields, with their docs (read-only)."""
        types = [catalog_entry(cls.describe()) for cls in registry.types().values()]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Node catalog",
            "types": types,
        }
        return TemplateResponse(request, "admin/nodes/catalog.html", context)


def catalog_entry(described: dict[str, Any]) -> dict[str, Any]:
    """A catalog entry with its config fields (and nested objects') documented as rows."""
    schema = described["config_schema"]
    nested = [
        {"name": name, "description": sub.get("description", ""), "fields": field_rows(sub, schema)}
        for name, sub in schema.get("$defs", {}).items()
        if sub.get("properties")
    ]
    return {
        **described,
        "fields": field_rows(schema, schema),
        "nested": nested,
        "schema_json": json.dumps(schema, indent=2),
    }


def field_rows(schema: dict[str, Any], root: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "type": type_summary(prop, root),
            "required": name in required,
            "default": json.dumps(prop["default"]) if "default" in prop else "",
            "description": prop.get("description", ""),
        }
        for name, prop in schema.get("properties", {}).items()
    ]


def type_summary(prop: dict[str, Any], root: dict[str, Any], depth: int = 0) -> str:
    """A short type for the docs: ``integer``, ``"all" | "any"``, ``list of Condition``, ..."""
    if depth > 3:
        return "…"
    ref = prop.get("$ref", "")
    if ref:
        name = ref.rsplit("/", 1)[1]
        target = root.get("$defs", {}).get(name, {})
        return " | ".join(json.dumps(v) for v in target["enum"]) if "enum" in target else name
    if "enum" in prop:
        return " | ".join(json.dumps(v) for v in prop["enum"])
    if "anyOf" in prop:
        return " or ".join(type_summary(o, root, depth + 1) for o in prop["anyOf"])
    kind = prop.get("type")
    if kind == "array":
        return f"list of {type_summary(prop.get('items', {}), root, depth + 1)}"
    if kind == "object":
        extra = prop.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            return f"object of {type_summary(extra, root, depth + 1)}"
        return "object"
    return str(kind or "any")
