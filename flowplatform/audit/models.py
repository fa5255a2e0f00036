"""AuditEntry: one line of the audit trail. Append-only: written once, removed only by age."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NoReturn

from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from flowplatform.audit.context import Source


class AuditImmutableError(Exception):
    """An audit entry was to be changed or deleted (only the retention purge may delete)."""


class Action(models.TextChoices):
    CREATE = "create", "created"
    CHANGE = "change", "changed"
    DELETE = "delete", "deleted"
    RUN = "run", "ran"
    CANCEL = "cancel", "cancelled"
    RERUN = "rerun", "re-ran"


def _refuse(what: str) -> NoReturn:
    raise AuditImmutableError(f"audit entries are append-only: {what} refused")


class AuditQuerySet(models.QuerySet["AuditEntry"]):
    """Reads and inserts only: ``update``/``delete`` raise (the purge goes round them)."""

    def update(self, **kwargs: Any) -> NoReturn:
        _refuse("update")

    def bulk_update(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("update")

    def delete(self) -> NoReturn:
        _refuse("delete")


class AuditEntry(models.Model):
    """Who did what to which object, when, through which door, from which address."""

    at = models.DateTimeField("time", default=timezone.now, db_index=True, editable=False)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name="user",
        help_text="The platform user who acted (empty: none, or since deleted).",
    )
    actor_name = models.CharField(
        "actor",
        max_length=150,
        blank=True,
        default="",
        help_text="The user's name when it acted (kept when the user is deleted); on the "
        "command line without --as, the operating-system user.",
    )
    source = models.CharField(
        "source", max_length=10, choices=Source.CHOICES, help_text="admin, api, cli or schedule."
    )
    action = models.CharField("action", max_length=10, choices=Action.choices)
    object_type = models.CharField(
        "object type", max_length=100, help_text="app_label.model, e.g. flows.flow."
    )
    object_id = models.CharField("object id", max_length=64, blank=True, default="")
    object_repr = models.CharField("object", max_length=200, blank=True, default="")
    details = models.JSONField(
        "details",
        default=dict,
        blank=True,
        help_text="Version made, names of the fields changed (never their values), run ids.",
    )
    remote_addr = models.GenericIPAddressField(
        "remote address", null=True, blank=True, help_text="The request's client address."
    )

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit entries"
        # Nobody adds, changes or deletes entries by hand: only reading is a permission.
        default_permissions = ("view",)
        indexes = [
            models.Index(fields=["object_type", "object_id"], name="auditentry_object"),
            models.Index(fields=["actor_name", "at"], name="auditentry_actor_at"),
        ]

    def __str__(self) -> str:
        who = self.actor_name or self.source
        return f"{who} {self.get_action_display()} {self.object_type} {self.object_repr}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            _refuse("update")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse("delete")


#: The session flag the PostgreSQL trigger lets deletes through with (the purge only).
PURGE_FLAG = "flowplatform.audit_purge"


def purge(before: datetime) -> int:
    """Delete the entries older than ``before`` (the retention purge); returns how many."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config(%s, 'on', true)", [PURGE_FLAG])
        old = AuditEntry.objects.filter(at__lt=before)
        deleted, _ = models.QuerySet.delete(old)  # the one delete allowed
    return deleted


def purge_expired(now: datetime | None = None) -> int:
    """Apply ``FLOWPLATFORM_AUDIT_RETENTION_DAYS`` (0 keeps entries for ever)."""
    days = settings.FLOWPLATFORM_AUDIT_RETENTION_DAYS
    if days <= 0:
        return 0
    return purge((now or timezone.now()) - timedelta(days=days))
