"""Flow triggers, and the record of every event that fired one (the idempotency key)."""

from __future__ import annotations

from typing import Any

from django.db import models

from flowplatform.jsonfields import OrderedJSONField
from flows.models import Flow, FlowRun
from nodes import crypto


class TriggerKind(models.TextChoices):
    WEBHOOK = "webhook", "webhook"
    AFTER = "after", "after other flows"
    FILES = "files", "file arrival"


class FlowTrigger(models.Model):
    """One way a flow starts by itself besides its schedules.

    ``name`` identifies the trigger within its flow and kind across imports: the webhook's
    name, the upstream slugs (``a,b``) or ``connection:path``. ``config`` holds the rest, as
    the flow file says it (``scheduling.triggers.flowfile``).
    """

    flow = models.ForeignKey(
        Flow, on_delete=models.CASCADE, related_name="triggers", verbose_name="flow"
    )
    kind = models.CharField("kind", max_length=10, choices=TriggerKind.choices)
    name = models.CharField(
        "name",
        max_length=400,
        help_text="The webhook's name, the upstream flows, or connection:path of watched files.",
    )
    config = models.JSONField("config", default=dict, blank=True)
    params = OrderedJSONField(
        "run params", default=dict, blank=True, help_text="Params every run it starts gets."
    )
    enabled = models.BooleanField("enabled", default=True)
    encrypted_secret = models.TextField(
        "secret (encrypted)",
        blank=True,
        default="",
        editable=False,
        help_text="Webhooks: the shared secret, encrypted; shown once when generated.",
    )
    owner = models.ForeignKey(
        "auth.User",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
        verbose_name="owner",
        help_text="Who last created or changed the trigger: its runs need this user's rights "
        "(empty: set by an operator on the command line).",
    )
    position = models.PositiveIntegerField("position", default=0, help_text="Order in the file.")
    polled_at = models.DateTimeField(
        "last polled", null=True, blank=True, editable=False, help_text="File triggers."
    )
    created_at = models.DateTimeField("created", auto_now_add=True)
    updated_at = models.DateTimeField("updated", auto_now=True)

    class Meta:
        ordering = ["flow", "position", "id"]
        verbose_name = "flow trigger"
        constraints = [
            models.UniqueConstraint(fields=["flow", "kind", "name"], name="flowtrigger_unique")
        ]

    def __str__(self) -> str:
        return f"{self.flow.slug}: {self.kind} {self.name}"

    def secret(self) -> str:
        """The decrypted secret ('' when none was generated)."""
        return crypto.decrypt(self.encrypted_secret) if self.encrypted_secret else ""

    def option(self, name: str, default: Any = None) -> Any:
        return self.config.get(name, default)


class AfterSuccess(models.TextChoices):
    """What became of a file once its run ended, when its trigger names ``after_success``."""

    NONE = "", "nothing to do"
    PENDING = "pending", "waiting for the run"
    DOING = "doing", "being moved or tagged"
    DONE = "done", "moved or tagged"
    FAILED = "failed", "failed"
    LEFT = "left", "left in place (the run did not succeed)"


class TriggerEvent(models.Model):
    """One event of a trigger, handled once: the row is the idempotency key.

    Created in the same transaction as its run under a unique (trigger, key): a webhook's
    Idempotency-Key, an upstream run, a data interval, a file's name, size and stamp. The files
    of a batch are one event each, all with the same run.
    """

    trigger = models.ForeignKey(FlowTrigger, on_delete=models.CASCADE, related_name="events")
    key = models.CharField("event key", max_length=600)
    run = models.ForeignKey(
        FlowRun,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="trigger_events",
        verbose_name="run",
    )
    details = models.JSONField("details", default=dict, blank=True)
    error = models.TextField("error", blank=True, default="")
    after_success = models.CharField(
        "after success",
        max_length=10,
        choices=AfterSuccess.choices,
        blank=True,
        default=AfterSuccess.NONE,
        help_text="File triggers: moving or tagging the file once its run succeeded.",
    )
    after_success_at = models.DateTimeField(
        "moved or tagged at", null=True, blank=True, help_text="When the file was moved or tagged."
    )
    after_success_attempts = models.PositiveSmallIntegerField(
        "attempts", default=0, help_text="Tries to move or tag the file (a retry may help)."
    )
    created_at = models.DateTimeField("created", auto_now_add=True)

    class Meta:
        ordering = ["trigger", "-created_at"]
        verbose_name = "trigger event"
        constraints = [
            models.UniqueConstraint(fields=["trigger", "key"], name="triggerevent_once_per_key")
        ]

    def __str__(self) -> str:
        return f"{self.trigger_id}: {self.key}"
