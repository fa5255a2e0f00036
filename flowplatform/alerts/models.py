"""What a flow asks to be told (``FlowAlert``) and each message sent (``AlertDelivery``)."""

from __future__ import annotations

from django.db import models


class AlertEvent(models.TextChoices):
    FAILED = "failed", "failed"
    SUCCEEDED = "succeeded", "succeeded"
    LATE = "late", "late"
    RECOVERED = "recovered", "recovered"


class FlowAlert(models.Model):
    """One item of a flow file's ``alerts``: events, and a webhook connection and/or e-mails."""

    flow = models.ForeignKey(
        "flows.Flow", on_delete=models.CASCADE, related_name="alerts", verbose_name="flow"
    )
    position = models.PositiveIntegerField("position", default=0)
    events = models.JSONField(
        "on",
        default=list,
        help_text="Events that send this alert: failed, succeeded, late, recovered.",
    )
    connection = models.CharField(
        "webhook connection",
        max_length=100,
        blank=True,
        default="",
        help_text="Name of the connection whose URL (and headers) receive the JSON body.",
    )
    emails = models.JSONField("e-mail", default=list, blank=True, help_text="Addresses to e-mail.")
    late_after_s = models.PositiveIntegerField(
        "late after (s)",
        null=True,
        blank=True,
        help_text="A scheduled interval not succeeded this long after it ended is late.",
    )

    class Meta:
        ordering = ["flow", "position", "id"]
        verbose_name = "flow alert"

    def __str__(self) -> str:
        return f"{self.flow.slug}: {', '.join(self.events)} -> {', '.join(self.targets())}"

    def targets(self) -> list[str]:
        """``webhook:NAME`` and ``email:ADDRESS``, one delivery each."""
        hooks = [f"webhook:{self.connection}"] if self.connection else []
        return [*hooks, *(f"email:{address}" for address in self.emails)]


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "pending"
    SENT = "sent", "sent"
    FAILED = "failed", "failed"


class AlertDelivery(models.Model):
    """One message about one event to one target; ``(key, target)`` is unique, so an event is
    sent at most once to each target whichever process notices it (or notices it twice)."""

    flow = models.ForeignKey(
        "flows.Flow", on_delete=models.CASCADE, related_name="+", verbose_name="flow"
    )
    run = models.ForeignKey(
        "flows.FlowRun",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="alert_deliveries",
        verbose_name="run",
    )
    event = models.CharField("event", max_length=20, choices=AlertEvent.choices)
    key = models.CharField(
        "event key", max_length=200, help_text="The run (or late interval) and the event."
    )
    target = models.CharField("target", max_length=400, help_text="webhook:NAME or email:ADDRESS")
    payload = models.JSONField("payload", default=dict, help_text="The JSON body sent.")
    status = models.CharField(
        "status", max_length=20, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField("attempts", default=0)
    error = models.TextField("last error", blank=True, default="")
    created_at = models.DateTimeField("created", auto_now_add=True)
    sent_at = models.DateTimeField("sent", null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "id"]
        verbose_name = "alert delivery"
        verbose_name_plural = "alert deliveries"
        constraints = [models.UniqueConstraint(fields=["key", "target"], name="alertdelivery_once")]

    def __str__(self) -> str:
        return f"{self.event} -> {self.target} ({self.status})"
