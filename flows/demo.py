"""The embedded demo: a small SQLite "warehouse" of orders and a local HTTP "CRM" receiver."""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

STATUSES = ("paid", "pending", "refunded")


def create_orders_db(path: Path, count: int = 1000, seed: int = 7) -> int:
    """(Re)create an SQLite file with ``count`` orders; returns how many are paid with amount > 0."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    rng = random.Random(seed)  # noqa: S311 - demo data, not security
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for i in range(1, count + 1):
        status = STATUSES[i % 3]
        amount = round(rng.uniform(-5, 500), 2) if i % 10 else 0
        created = (start + timedelta(minutes=37 * i)).isoformat()
        rows.append((i, f"Customer {i} Müller-Łódź", f"c{i}@example.test", status, amount, created))
    with sqlite3.connect(path) as db:
        db.execute(
            "create table orders (id integer primary key, customer text, email text,"
            " status text, amount real, created_at text)"
        )
        db.executemany("insert into orders values (?, ?, ?, ?, ?, ?)", rows)
    return sum(1 for r in rows if r[3] == "paid" and r[4] > 0)


class Receiver:
    """A local HTTP server that accepts JSON posts and keeps what it received."""

    def __init__(self) -> None:
        self.records: list[Any] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                payload = json.loads(body)
                with receiver._lock:
                    receiver.records.extend(payload if isinstance(payload, list) else [payload])
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
