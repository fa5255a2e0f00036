"""``manage.py importflow FILE``: create or update a flow from a flow file (all or nothing)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import transaction

from flowplatform.audit.command import AuditedCommand
from flowplatform.jsondoc import (
    JSONDocumentError,
    load_json_document,
    read_document,
)
from flowplatform.jsonfields import same_json
from flows.access import AccessDenied, apply_as
from flows.flowfile import apply_flow_file, export_flow
from flows.models import Flow
from flows.validation import FlowValidationError


class Command(AuditedCommand):
    help = "Create or update a flow from a JSON flow file. A file with any problem changes nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="path to the flow file, or - for standard input")

    def handle(self, *args: Any, **options: Any) -> None:
        data = read_json(options["file"])
        slug = data.get("slug") if isinstance(data, dict) else None
        existing = Flow.objects.filter(slug=slug).first() if isinstance(slug, str) else None
        before = export_flow(existing) if existing is not None else None
        try:
            if self.acting_user is None:
                flow, created = apply_flow_file(data)
            else:
                with transaction.atomic():
                    flow, created = apply_as(self.acting_user, data)
        except AccessDenied as exc:
            where = "; ".join(str(problem) for problem in exc.problems if problem.path)
            raise CommandError(
                f"{options['file']}: {exc}{f' ({where})' if where else ''}"
            ) from None
        except FlowValidationError as exc:
            count = len(exc.problems)
            if count == 1:
                raise CommandError(f"{options['file']}: {exc.problems[0]}") from None
            for problem in exc.problems:  # in file order, the first first
                self.stderr.write(f"{options['file']}: {problem}")
            raise CommandError(
                f"{options['file']}: {count} problems (above), nothing changed; "
                f"the first: {exc.problems[0]}"
            ) from None
        version = flow.latest_version
        if created:
            verb = "created"
        elif same_json(before, export_flow(flow)):
            verb = "unchanged"
        else:
            verb = "updated"
        self.stdout.write(f"flow '{flow.slug}' {verb} (version {version.number if version else 0})")


def read_json(path: str) -> Any:
    """Parse a flow file by the platform's JSON document rules (flowplatform/jsondoc.py),
    raising CommandError with one readable line on any failure."""
    try:
        if path == "-":
            raw = read_document(sys.stdin.buffer)
        else:
            with Path(path).open("rb") as stream:
                raw = read_document(stream)
        return load_json_document(raw)
    except OSError as exc:
        raise CommandError(f"{path}: cannot read file ({exc.strerror})") from None
    except JSONDocumentError as exc:
        first, count = exc.problems[0], len(exc.problems)
        more = f" (and {count - 1} more)" if count > 1 else ""
        raise CommandError(f"{path}: {first}{more}") from None
    except ValueError as exc:  # a path the system cannot take, e.g. with a NUL character
        raise CommandError(f"{path!r}: cannot read file ({exc})") from None
