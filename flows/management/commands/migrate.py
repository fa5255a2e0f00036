"""``manage.py migrate``, which first creates a missing PostgreSQL platform database (or says
in one line what to do) instead of failing with a traceback."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError
from django.core.management.commands.migrate import Command as DjangoMigrate

from flowplatform.database import DatabaseUnavailable, ensure_database


class Command(DjangoMigrate):
    def handle(self, *args: Any, **options: Any) -> None:
        try:
            created = ensure_database(options["database"])
        except DatabaseUnavailable as exc:
            raise CommandError(str(exc)) from None
        if created:
            self.stdout.write(f"Created the database '{created}'.")
        super().handle(*args, **options)
