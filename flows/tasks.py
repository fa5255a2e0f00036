"""Celery autodiscovery entry point for the flows app."""

from flows.engine.partitions import join_partitions, produce_partitions, run_partition
from flows.engine.tasks import barrier, fail_run, finish_run, run_node

__all__ = [
    "barrier",
    "fail_run",
    "finish_run",
    "join_partitions",
    "produce_partitions",
    "run_node",
    "run_partition",
]
