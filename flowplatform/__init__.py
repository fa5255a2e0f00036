"""Flow Platform: the Django project that wires nodes, flows and scheduling together."""

from flowplatform import dbfiles as dbfiles  # the SQLite database file stays 0600
from flowplatform.celery import app as celery_app

__all__ = ["celery_app"]
