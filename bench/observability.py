"""Observability overhead: the overhead benchmark's flow with tracing and metrics off and on.

    .venv/bin/python bench/observability.py [--rounds 20] [--runs 20] [--concurrent 20]
        [--on-env NAME=VALUE ...] [--variant 'NAME:VAR=VALUE ...' ...] [--also NAME=PATH ...]

Sides run side by side, each a starting process with a worker of its own (2 pool processes,
its own queue), on one database and one broker:

- off: no ``OTEL_*`` variable, a worker without a metrics port (what a deployment gets by
  default);
- on: every trace kept, every default instrumentation, spans exported in batches over
  OTLP/gRPC (the default protocol) to a local collector (``bench/otlp_sink.py``), the worker
  serving ``/metrics`` for its pool (multiprocess mode). ``--on-env`` adds variables to every
  on side (``OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`` exports to ``bench/peer.py``);
- ``--variant``: one more on side with variables of its own (a sampler, left-out
  instrumentations, exporter settings);
- ``--also NAME=PATH``: one more on side running the code checked out at PATH (an earlier
  commit, ``git worktree add`` or ``git archive``): before and after in one invocation.

Each round runs ``--runs`` sequential runs of the 4-node flow on each side, the sides taking
turns run by run (so that all see the same machine), then ``--concurrent`` at once on each.
Latency: from ``start_run`` to the run's ``finished_at``; a round's figure is the median of its
runs. CPU: the worker's processes (every thread: the span exporter's, gRPC's, the heartbeat's)
and the starting process (less its polling for the end of its runs), since the side's previous
round, per run; and over the whole session, from after the warm-up to the worker's exit (the
last spans' export included; the worker's shutdown too, the same on every side). Reported: the
median over the rounds and the spread, the per-round ratios to off (median and quartiles),
the load average. CPU time is the robust figure on a loaded machine: latency moves with the
load of the moment. Goal: at most 10 % more latency.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# --- One side (a child process, driven over stdin/stdout) ------------------------------------


def process_cpu_s(pid: int) -> float:
    """CPU seconds of a process so far, exited threads included (clock ticks, /proc stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_s(pid: int, main: bool = True) -> float:
    """CPU seconds of every live thread of a process (nanosecond figures, /proc schedstat);
    without its main thread when not ``main``."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        if not main and task.name == str(pid):
            continue
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


#: A run not finished by then is taken as lost (its message flushed from the shared broker by
#: some other test run): its round is left out.
LOST_AFTER_S = 60


class Lost(Exception):
    pass


class Side:
    """The starting process of one side: its worker, the sink of its spans, its counters."""

    def __init__(self, observe: bool) -> None:
        from bench.overhead import observe as observe_into_sink

        self.sink = observe_into_sink() if observe else None
        self.worker: Any = None
        try:
            self.start(observe)
        except BaseException:
            self.close()
            raise

    def start(self, observe: bool) -> None:
        from bench import overhead
        from bench.common import Worker, configure

        configure()
        import psycopg

        from flows.models import FlowRun

        # Polling for the end of a run: a connection of its own, opened before tracing is
        # set up (not traced), its CPU taken out of the starting process's.
        self.poll = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
        self.poll_sql = f'select finished_at, status from "{FlowRun._meta.db_table}" where id = %s'
        if observe:
            from django.db import connection

            from flowplatform import telemetry

            telemetry.setup("cli")  # as manage.py does, before the database is used
            connection.close()  # (configure() migrated: reopened, it is traced as in the CLI)
        from bench.common import Peer

        # The flow users run ends in http_post: its records go to a peer of this side's own.
        self.peer = Peer()
        overhead.install_flow(self.peer.url)
        self.worker = Worker(concurrency=2)
        self.worker.wait_ready()
        self.poll_cpu = 0.0
        self.runs(5)  # warm-up: imports, connections, the version cache
        self.mark()
        # The whole session, from here to the worker's exit (its last spans flushed).
        self.session = {
            "worker": sum(process_cpu_s(pid) for pid in self.worker.pids()),
            "starter": time.process_time(),
            "runs": 0,
            "poll": 0.0,
        }

    def mark(self) -> None:
        self.worker_cpu = sum(thread_cpu_s(pid) for pid in self.worker.pids())
        self.threads_cpu = self.pool_threads_cpu()
        self.own_cpu = time.process_time()
        self.own_main_cpu = time.thread_time()
        if hasattr(self, "session"):
            self.session["poll"] += self.poll_cpu
        self.poll_cpu = 0.0

    def pool_threads_cpu(self) -> float:
        """CPU of the pool processes' threads other than their main one (the span exporter's,
        the heartbeat's)."""
        return sum(thread_cpu_s(pid, main=False) for pid in self.worker.pids()[1:])

    def finished_at(self, run_id: Any) -> float:
        started = time.thread_time()
        deadline = time.monotonic() + LOST_AFTER_S
        try:
            while time.monotonic() < deadline:
                row = self.poll.execute(self.poll_sql, [run_id]).fetchone()
                if row is not None and row[0] is not None:
                    if row[1] != "succeeded":
                        raise SystemExit(f"run {run_id} ended {row[1]}")
                    return float(row[0].timestamp())
                time.sleep(0.002)
            raise Lost(f"run {run_id} did not finish within {LOST_AFTER_S}s")
        finally:
            self.poll_cpu += time.thread_time() - started

    def runs(self, count: int, at_once: bool = False) -> list[float]:
        """``count`` runs, one after the other (their latencies) or all at once (the time
        from the first start to the last end)."""
        from flows.services import start_run

        if at_once:
            if hasattr(self, "session"):
                self.session["runs"] += count
            started = time.time()
            ids = [start_run("bench-overhead").id for _ in range(count)]
            return [max(self.finished_at(run_id) for run_id in ids) - started]
        if hasattr(self, "session"):
            self.session["runs"] += count
        latencies = []
        for _ in range(count):
            started = time.time()
            run_id = start_run("bench-overhead").id
            latencies.append(self.finished_at(run_id) - started)
        return latencies

    def run(self) -> dict[str, Any]:
        """One run, alone: its latency (or why it was lost)."""
        try:
            return {"latency": self.runs(1)[0]}
        except Lost as exc:
            return {"lost": str(exc)}

    def burst(self, count: int) -> dict[str, Any]:
        """``count`` runs at once: runs per second (or why one was lost)."""
        try:
            return {"throughput": count / self.runs(count, at_once=True)[0]}
        except Lost as exc:
            return {"lost": str(exc)}

    def cpu(self) -> dict[str, Any]:
        """CPU seconds since the last call: the worker's, its pool threads' other than the
        main one, the starting process's (without its polling)."""
        figures = {
            "worker_cpu": sum(thread_cpu_s(pid) for pid in self.worker.pids()) - self.worker_cpu,
            "threads_cpu": self.pool_threads_cpu() - self.threads_cpu,
            "starter_cpu": time.process_time() - self.own_cpu - self.poll_cpu,
            "starter_threads_cpu": (time.process_time() - self.own_cpu)
            - (time.thread_time() - self.own_main_cpu),
        }
        self.mark()
        return figures

    def close(self) -> dict[str, Any]:
        """Stop the worker (its pool processes flush their last spans) and the sink; what was
        observed, and the CPU of the whole session per run (the final flush included)."""
        figures = ""
        session: dict[str, float] = {}
        try:
            if self.sink is not None and self.worker is not None:
                figures = self.observed()
        finally:
            if self.worker is not None:
                self.worker.stop()
            if getattr(self, "peer", None) is not None:
                self.peer.stop()
            if self.sink is not None:
                from flowplatform import telemetry

                telemetry.shutdown()  # the starting process's last spans
            if hasattr(self, "session") and self.session["runs"]:
                runs = self.session["runs"]
                ended = resource.getrusage(resource.RUSAGE_CHILDREN)  # the worker, now reaped
                worker = ended.ru_utime + ended.ru_stime - self.session["worker"]
                starter = time.process_time() - self.session["starter"]
                starter -= self.session["poll"] + self.poll_cpu
                session = {"worker": worker / runs * 1000, "starter": starter / runs * 1000}
            if self.sink is not None:
                time.sleep(0.5)
                stats = self.sink.stats()
                figures += f", {stats['requests']} span batches exported in all"
                if "spans" in stats:
                    figures += f" ({stats['spans']} spans)"
                self.sink.stop()
        return {"observed": figures, "session": session}

    def observed(self) -> str:
        """Proof that it was on: node runs counted by the worker."""
        import requests
        from prometheus_client.parser import text_string_to_metric_families

        port = os.environ["FLOWPLATFORM_WORKER_METRICS_PORT"]
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        node_runs = sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "flowplatform_node_runs_total"
        )
        return f"{node_runs:.0f} node runs counted by the worker"


def serve(observe: bool) -> None:
    """Child mode: set a side up, then answer ``run``, ``burst COUNT``, ``cpu`` and ``close``
    (one JSON object per line)."""
    side = Side(observe)
    closed = False
    try:
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            command = line.split()
            if command[0] == "run":
                answer = side.run()
            elif command[0] == "burst":
                answer = side.burst(int(command[1]))
            elif command[0] == "cpu":
                answer = side.cpu()
            else:
                closed = True
                print(json.dumps(side.close()), flush=True)
                return
            print(json.dumps(answer), flush=True)
    finally:
        if not closed:
            side.close()


# --- The comparison ---------------------------------------------------------------------------


class Child:
    """One side, served by a child process (``--serve``), with the code at ``root``."""

    def __init__(self, name: str, observe: bool, extra_env: dict[str, str], root: Path) -> None:
        self.name = name
        env = {**os.environ, **(extra_env if observe else {})}
        for variable in [n for n in env if n.startswith("OTEL_") and not observe]:
            del env[variable]
        if not observe:
            env.pop("FLOWPLATFORM_WORKER_METRICS_PORT", None)
        args = [
            sys.executable,
            __file__,
            "--serve",
            "on" if observe else "off",
            "--root",
            str(root),
        ]
        self.process = subprocess.Popen(
            args, cwd=root, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.answer()

    def answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the {self.name} side of the benchmark exited")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.answer()

    def close(self) -> dict[str, Any]:
        try:
            return self.ask("close")
        finally:
            self.process.wait(timeout=120)


def spread(values: list[float]) -> str:
    """The middle half of ``values`` (their quartiles) and their range."""
    if len(values) < 4:
        return f"range {min(values):.2f}-{max(values):.2f}"
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"quartiles {q1:.2f}-{q3:.2f}, range {min(values):.2f}-{max(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--runs", type=int, default=20, help="sequential runs per round")
    parser.add_argument("--concurrent", type=int, default=20, help="runs at once per round")
    parser.add_argument(
        "--on-env", action="append", default=[], metavar="NAME=VALUE", help="for the on sides"
    )
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="one more on side, with the code checked out at PATH (an earlier commit: before/after)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="'NAME:VAR=VALUE ...'",
        help="one more on side, with these variables (e.g. a sampler, left-out instrumentations)",
    )
    parser.add_argument(
        "--off-twice",
        action="store_true",
        help="a second off side, to see what two identical sides differ by on this machine",
    )
    parser.add_argument("--serve", choices=["off", "on"], help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        os.chdir(args.root)
        sys.path.insert(0, str(args.root))
        serve(args.serve == "on")
        return
    extra = dict(item.split("=", 1) for item in args.on_env)
    # Every process of every side with the same hash seed: with a seed of their own, two
    # identical sides differed by about 3 % in CPU per run.
    os.environ.setdefault("PYTHONHASHSEED", "0")
    load_before = os.getloadavg()
    sides = [Child("off", False, extra, ROOT), Child("on", True, extra, ROOT)]
    if args.off_twice:
        sides.append(Child("off-again", False, extra, ROOT))
    for item in args.also:
        name, path = item.split("=", 1)
        sides.append(Child(name, True, extra, Path(path).resolve()))
    for item in args.variant:
        name, _, assignments = item.partition(":")
        variables = dict(a.split("=", 1) for a in assignments.split())
        sides.append(Child(name, True, {**extra, **variables}, ROOT))
    results: dict[str, list[dict[str, Any]]] = {side.name: [] for side in sides}
    try:
        for number in range(1, args.rounds + 1):
            outcome = one_round(sides, number, args.runs, args.concurrent)
            if isinstance(outcome, str):
                print(f"round {number:2}: left out, {outcome}", flush=True)
                continue
            figures = []
            for side in sides:
                results[side.name].append(outcome[side.name])
                answer = outcome[side.name]
                figures.append(
                    f"{side.name} {answer['latency'] * 1000:5.1f} ms {cpu_per_run([answer]):5.1f} ms"
                )
            print(
                f"round {number:2} (latency, CPU/run): {'; '.join(figures)}; "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    finally:
        closed = {side.name: side.close() for side in sides}
    report(results, args, load_before, closed, extra)


def one_round(
    sides: list[Child], number: int, runs: int, concurrent: int
) -> dict[str, dict[str, Any]] | str:
    """A round: ``runs`` runs of each side, one side's run after the other's (who goes first
    turns), then ``concurrent`` at once on each side; each side's median latency, throughput
    and CPU. A string when a run was lost (the round is left out)."""
    latencies: dict[str, list[float]] = {side.name: [] for side in sides}
    bursts: dict[str, float] = {side.name: 0.0 for side in sides}
    lost = ""
    for index in range(runs):
        shift = (number + index) % len(sides)
        for side in sides[shift:] + sides[:shift]:
            answer = side.ask("run")
            lost = lost or answer.get("lost", "")
            latencies[side.name].append(answer.get("latency", 0.0))
    if concurrent:
        for side in sides:
            answer = side.ask(f"burst {concurrent}")
            lost = lost or answer.get("lost", "")
            bursts[side.name] = answer.get("throughput", 0.0)
    cpu = {side.name: side.ask("cpu") for side in sides}
    if lost:
        return lost
    return {
        side.name: {
            "latency": statistics.median(latencies[side.name]),
            "throughput": bursts[side.name],
            "runs": runs + concurrent,
            **cpu[side.name],
        }
        for side in sides
    }


def cpu_per_run(rounds: list[dict[str, Any]], part: str = "") -> float:
    keys = [part] if part else ["worker_cpu", "starter_cpu"]
    total = sum(r[key] for r in rounds for key in keys)
    return total / sum(r["runs"] for r in rounds) * 1000


def report(
    results: dict[str, list[dict[str, Any]]],
    args: argparse.Namespace,
    load_before: tuple[float, float, float],
    closed: dict[str, dict[str, Any]],
    extra: dict[str, str],
) -> None:
    off = results["off"]
    names = list(results)
    load_after = os.getloadavg()
    print()
    print(f"on sides: every default, plus {extra}" if extra else "on sides: every default")
    for name in names[1:]:
        print(f"{name}: {closed[name]['observed']}")
    print(
        f"load average (1, 5, 15 min): before {' '.join(f'{x:.1f}' for x in load_before)}, "
        f"after {' '.join(f'{x:.1f}' for x in load_after)} (2 cores)"
    )
    print(f"{len(off)} rounds; in each, every side ran {args.runs} runs in a row", end="")
    print(f" and {args.concurrent} at once" if args.concurrent else "")
    print("latency, median over the rounds of each round's median (quartiles, range):")
    for name in names:
        values = [r["latency"] * 1000 for r in results[name]]
        print(f"  {name}: {statistics.median(values):.1f} ms ({spread(values)})")
    print("CPU per run over all rounds: worker (of which its pool processes' threads other than")
    print("the main one: span export, heartbeat) + starting process (of which its threads other")
    print("than the main one) = total")
    for name in names:
        rounds = results[name]
        print(
            f"  {name}: {cpu_per_run(rounds, 'worker_cpu'):.2f} "
            f"({cpu_per_run(rounds, 'threads_cpu'):.2f}) + {cpu_per_run(rounds, 'starter_cpu'):.2f}"
            f" ({cpu_per_run(rounds, 'starter_threads_cpu'):.2f}) = {cpu_per_run(rounds):.2f} ms"
        )
    print("CPU per run over the whole session, the last spans' export and the worker's shutdown")
    print("included: worker + starting process = total")
    whole: dict[str, float] = {}
    for name in names:
        session = closed[name]["session"]
        if session:
            whole[name] = session["worker"] + session["starter"]
            print(
                f"  {name}: {session['worker']:.2f} + {session['starter']:.2f} = {whole[name]:.2f} ms"
            )
    if args.concurrent:
        print(f"throughput, {args.concurrent} at once, median of the rounds:")
        for name in names:
            print(
                f"  {name}: {statistics.median(r['throughput'] for r in results[name]):.1f} runs/s"
            )
    lat_off = statistics.median(r["latency"] for r in off)
    for name in names[1:]:
        on = results[name]
        lat_ratios = [b["latency"] / a["latency"] for a, b in zip(off, on, strict=True)]
        cpu_ratios = [cpu_per_run([b]) / cpu_per_run([a]) for a, b in zip(off, on, strict=True)]
        lat_on = statistics.median(r["latency"] for r in on)
        print(
            f"latency ratio {name}/off: {lat_on / lat_off:.3f} of the medians; per round: median "
            f"{statistics.median(lat_ratios):.3f} ({spread(lat_ratios)}) (goal <= 1.10)"
        )
        print(
            f"CPU ratio {name}/off: {cpu_per_run(on) / cpu_per_run(off):.3f} over all rounds; "
            f"per round: median {statistics.median(cpu_ratios):.3f} ({spread(cpu_ratios)})"
            + (
                f"; whole session {whole[name] / whole['off']:.3f}"
                if "off" in whole and name in whole
                else ""
            )
        )


if __name__ == "__main__":
    main()
