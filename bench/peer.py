"""A local HTTP peer for the benchmarks: accepts POSTed JSON arrays and counts the records.

    .venv/bin/python bench/peer.py   # prints the port it listens on (127.0.0.1 only)

``GET /stats`` answers ``{"requests": n, "records": n}``; ``POST /reset`` zeroes the counters.
Records are counted by their ``"order_id"`` keys rather than parsed, so the peer costs the
flow and the hand-written job the same little CPU.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.records = 0


COUNTERS = Counters()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real ingest endpoint would
    # Headers and body in one segment: no Nagle / delayed-ACK stall of 40 ms per response.
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/reset":
            with COUNTERS.lock:
                COUNTERS.requests = COUNTERS.records = 0
        else:
            with COUNTERS.lock:
                COUNTERS.requests += 1
                COUNTERS.records += body.count(b'"order_id"')
        self._reply({"ok": True})

    def do_GET(self) -> None:
        with COUNTERS.lock:
            self._reply({"requests": COUNTERS.requests, "records": COUNTERS.records})

    def _reply(self, data: dict[str, object]) -> None:
        payload = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    sys.exit(0)


if __name__ == "__main__":
    main()
