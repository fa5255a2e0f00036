"""``manage.py exportflow SLUG``: write a flow as a flow file (never with secrets)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from flows.flowfile import export_flow
from flows.models import Flow


class Command(BaseCommand):
    help = "Write a flow as a JSON flow file, to standard output or --output FILE."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("-o", "--output", help="write to this file instead of standard output")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            flow = Flow.objects.get(slug=options["slug"])
        except Flow.DoesNotExist:
            raise CommandError(f"flow '{options['slug']}' does not exist") from None
        text = json.dumps(export_flow(flow), indent=2, ensure_ascii=False) + "\n"
        if options["output"]:
            try:
                Path(options["output"]).write_text(text)
            except OSError as exc:
                raise CommandError(
                    f"{options['output']}: cannot write file ({exc.strerror})"
                ) from None
            self.stderr.write(f"flow '{flow.slug}' written to {options['output']}")
        else:
            self.stdout.write(text, ending="")
