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
from flows.access import AccessDenied, apply_as
from flows.flowfile import apply_flow_file
from flows.validation import FlowValidationError


class Command(AuditedCommand):
    help = "Create or update a flow from a JSON flow file. A file with any problem changes nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="path to the flow file, or - for standard input")

    def handle(self, *args: Any, **options: Any) -> None:
        data = read_json(options["file"])
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
            for problem in exc.problems[1:]:
                self.stderr.write(str(problem))
            count = len(exc.problems)
            more = f" (and {count - 1} more above)" if count > 1 else ""
            raise CommandError(f"{options['file']}: {exc.problems[0]}{more}") from None
        version = flow.latest_version
        verb = "created" if created else "updated"
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
