"""``manage.py rundemo``: the minimal flow end to end on embedded defaults."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from flows.demo import Receiver, create_orders_db
from flows.flowfile import apply_flow_file
from flows.models import RunStatus, Trigger
from flows.services import start_run, wait_for_run
from flows.watch import summary_table, watch_run
from nodes.models import Connection

FLOW_FILE = Path(settings.BASE_DIR) / "examples" / "paid-orders.json"


class Command(BaseCommand):
    help = (
        "Run the demo flow: SQLite orders -> filter -> map fields -> HTTP POST to a local receiver."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--orders", type=int, default=1000, help="orders to generate")

    def handle(self, *args: Any, **options: Any) -> None:
        # The receiver listens on loopback, which outbound HTTP refuses unless allowed.
        settings.FLOWPLATFORM_HTTP_ALLOW_PRIVATE = True
        call_command("migrate", verbosity=0, interactive=False)
        db_path = Path(settings.VAR_DIR) / "demo" / "orders.sqlite3"
        expected = create_orders_db(db_path, options["orders"])
        self.stdout.write(f"warehouse: {options['orders']} orders in {db_path} ({expected} paid)")
        with Receiver() as crm:
            for name, url in (("warehouse", f"sqlite:///{db_path}"), ("crm", crm.url)):
                connection = Connection.objects.filter(name=name).first() or Connection(name=name)
                connection.set_url(url)
                connection.save()
            flow, _ = apply_flow_file(json.loads(FLOW_FILE.read_text()))
            self.stdout.write(f"flow '{flow.slug}' imported from {FLOW_FILE.name}")
            run = start_run(flow, trigger=Trigger.MANUAL)
            self.stdout.write(f"run {run.id} started")
            for line in watch_run(run, timeout=300):
                self.stdout.write(f"  {line}")
            run = wait_for_run(run, timeout=5)
            self.stdout.write("")
            for line in summary_table(run):
                self.stdout.write(line)
            self.stdout.write(f"crm received {len(crm.records)} records (expected {expected})")
        if run.status != RunStatus.SUCCEEDED or len(crm.records) != expected:
            raise CommandError(f"demo run {run.status}: {run.error or 'wrong record count'}")
        self.stdout.write(f"run {run.id} finished in {run.duration_s:.2f}s: {run.status}")
