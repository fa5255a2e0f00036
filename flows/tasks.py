"""Celery autodiscovery entry point for the flows app."""

from flows.engine.tasks import barrier, fail_run, finish_run, run_node

__all__ = ["barrier", "fail_run", "finish_run", "run_node"]
