"""A deleted schedule takes its beat entry with it (also when its flow is deleted); a deleted
user's schedules are disabled (they must never fire as the operator)."""

from __future__ import annotations

from typing import Any

from django_celery_beat.models import PeriodicTask


def delete_periodic_task(sender: Any, instance: Any, **kwargs: Any) -> None:
    if instance.periodic_task_id is not None:
        # A queryset delete still sends pre_delete, which bumps PeriodicTasks for beat.
        PeriodicTask.objects.filter(pk=instance.periodic_task_id).delete()


def disable_owned_schedules(sender: Any, instance: Any, **kwargs: Any) -> None:
    """Before a user is deleted (their schedules' ``owner`` becomes NULL): disable them."""
    from scheduling.access import disable_owned_by

    disable_owned_by(instance)
