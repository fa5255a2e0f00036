"""``manage.py workerping [--name NAME] [--timeout S]``: a worker's liveness probe.

Asks one worker (by its node name, ``celery@<hostname>`` by default: the pod's own worker)
to answer a ping through the broker, and exits 0 when it does within ``--timeout`` seconds,
else 1 with one line on stderr. The whole command is bounded by the timeout plus the broker's
connection timeout; it never hangs a probe.
"""

from __future__ import annotations

import socket
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Exit 0 if the named Celery worker answers a ping within the timeout, else 1."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--name",
            default=f"celery@{socket.gethostname()}",
            help="the worker's node name (its --hostname); default celery@<this host>",
        )
        parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait")

    def handle(self, *args: Any, **options: Any) -> None:
        from kombu.exceptions import OperationalError

        from flowplatform.celery import app

        name, timeout = options["name"], options["timeout"]
        if timeout <= 0:
            raise CommandError("--timeout must be more than 0 seconds")
        if app.conf.task_always_eager:
            raise CommandError("no broker configured (CELERY_BROKER_URL): no worker to ping")
        try:
            replies = app.control.ping(destination=[name], timeout=timeout)
        except (OperationalError, OSError) as exc:
            raise CommandError(f"broker unreachable: {exc}") from None
        if not any(name in reply for reply in replies):
            raise CommandError(f"worker {name} did not answer within {timeout:g}s")
        self.stdout.write(f"{name}: pong")
