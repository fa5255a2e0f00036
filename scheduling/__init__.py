"""Schedules: FlowSchedule kept in sync with django-celery-beat."""
