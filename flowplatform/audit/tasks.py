"""The periodic retention purge of the audit trail (beat entry ``flowplatform-purge-audit``)."""

from __future__ import annotations

from celery import shared_task

from flowplatform.audit.models import purge_expired


@shared_task(name="audit.purge")
def purge_audit() -> int:
    return purge_expired()
