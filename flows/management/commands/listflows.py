"""``manage.py listflows``: the flows, one line each (what ``GET /api/v1/flows/`` lists)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db.models import Count, IntegerField, Max, OuterRef, Subquery

from flows.models import Flow, FlowRun


class Command(BaseCommand):
    help = "List the flows: slug, current version, nodes, last run and its status."

    def handle(self, *args: Any, **options: Any) -> None:
        last = FlowRun.objects.filter(flow=OuterRef("pk")).order_by("-created_at")
        flows = Flow.objects.order_by("slug").annotate(
            version=Max("versions__number"),
            node_count=Count("nodes", distinct=True),
            last_status=Subquery(last.values("status")[:1]),
            last_at=Subquery(last.values("created_at")[:1]),
            run_count=Subquery(
                FlowRun.objects.filter(flow=OuterRef("pk"))
                .values("flow")
                .annotate(n=Count("id"))
                .values("n"),
                output_field=IntegerField(),
            ),
        )
        rows = [
            (
                flow.slug,
                f"v{flow.version}" if flow.version else "-",
                str(flow.node_count),
                str(flow.run_count or 0),
                f"{flow.last_status} {flow.last_at:%Y-%m-%d %H:%M}" if flow.last_at else "-",
                flow.name,
            )
            for flow in flows
        ]
        if not rows:
            self.stdout.write("no flows (add one with: manage.py importflow FILE)")
            return
        for line in table(("slug", "version", "nodes", "runs", "last run", "name"), rows):
            self.stdout.write(line)


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned columns, two spaces apart, under a header."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
