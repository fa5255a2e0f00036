"""``manage.py purgeaudit [--dry-run]``: delete audit entries past the retention period."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from flowplatform.audit.models import AuditEntry, purge_expired


class Command(BaseCommand):
    help = (
        "Delete audit entries older than FLOWPLATFORM_AUDIT_RETENTION_DAYS (0 keeps them all). "
        "Beat runs the same purge daily."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        days = settings.FLOWPLATFORM_AUDIT_RETENTION_DAYS
        if days <= 0:
            self.stdout.write(
                "audit entries are kept for ever (FLOWPLATFORM_AUDIT_RETENTION_DAYS=0)"
            )
            return
        if options["dry_run"]:
            cutoff = timezone.now() - timedelta(days=days)
            count = AuditEntry.objects.filter(at__lt=cutoff).count()
            self.stdout.write(f"{count} audit entries older than {days} days would be deleted")
            return
        count = purge_expired()
        self.stdout.write(f"deleted {count} audit entries older than {days} days")
