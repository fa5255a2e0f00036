"""The engine: compile a flow version into a Celery canvas and execute its nodes."""
