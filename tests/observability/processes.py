"""Real processes for the observability tests: gunicorn, a private Redis, Prometheus."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import requests

from tests.conftest import ROOT, wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A subprocess in a session of its own, its stdout and stderr in a log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.log_path = Path(os.environ["FLOWPLATFORM_VAR_DIR"]) / f"{name}-{free_port()}.log"
        self.args, self.env = args, env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.args,
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class WebProcess(Process):
    """gunicorn serving the platform on a loopback port, on the test database."""

    def __init__(self, db_url: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        args = [
            gunicorn, "flowplatform.wsgi:application", "--bind", f"127.0.0.1:{self.port}",
            "--workers", "1", "--timeout", "60",
        ]  # fmt: skip
        full_env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": db_url,
            **env,
        }
        super().__init__("web", args, full_env)

    def start(self, timeout: float = 60) -> WebProcess:
        super().start()

        def up() -> bool:
            if not self.alive():
                raise AssertionError(f"gunicorn exited; see {self.log_path}:\n{self.log()[-3000:]}")
            try:
                return requests.get(f"{self.url}/healthz", timeout=5).status_code == 200
            except (requests.ConnectionError, requests.Timeout):
                return False

        wait_until(up, timeout, 0.2, f"gunicorn did not answer; see {self.log_path}")
        return self


class RedisProcess(Process):
    """A private redis-server on a loopback port (a broker that can be taken away)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="fp-redis-")
        args = [
            shutil.which("redis-server") or "redis-server", "--port", str(self.port),
            "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self.dir,
        ]  # fmt: skip
        super().__init__("redis", args, dict(os.environ))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 20) -> RedisProcess:
        super().start()
        import redis

        def up() -> bool:
            try:
                return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
            except redis.RedisError:
                return False

        wait_until(up, timeout, 0.1, f"redis-server did not start; see {self.log_path}")
        return self


def json_lines(text: str) -> list[dict[str, Any]]:
    """The lines of a log that are JSON objects."""
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                found.append(value)
    return found


def spans_in(text: str) -> list[dict[str, Any]]:
    """Spans written by the console exporter (one JSON object per line)."""
    return [line for line in json_lines(text) if "context" in line and "name" in line]


def hex_id(value: str) -> str:
    """The console exporter writes ids as 0x...; the platform stores bare hex."""
    return value.removeprefix("0x")
