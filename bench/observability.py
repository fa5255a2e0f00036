"""Observability overhead: the overhead benchmark's flow with tracing and metrics off and on.

    .venv/bin/python bench/observability.py [--sessions 3] [--rounds 15] [--runs 15]
        [--concurrent 10]
        [--on-env NAME=VALUE ...] [--variant 'NAME:VAR=VALUE ...' ...] [--also NAME=PATH ...]

Sides run side by side, each a starting process with a worker of its own (2 pool processes,
its own queue), on one database and one broker:

- off: no ``OTEL_*`` variable, a worker without a metrics port (what a deployment gets by
  default);
- on: every trace kept, every default instrumentation, spans exported in batches over
  OTLP/HTTP (http/protobuf, the default protocol) to a local peer (``bench/peer.py``), the
  worker serving ``/metrics`` for its pool (multiprocess mode). ``--on-env`` adds variables to
  every on side (``OTEL_EXPORTER_OTLP_PROTOCOL=grpc`` exports to ``bench/otlp_sink.py``);
- ``--variant``: one more on side with variables of its own (a sampler, left-out
  instrumentations, exporter settings);
- ``--also NAME=PATH``: one more on side running the code checked out at PATH (an earlier
  commit, ``git worktree add`` or ``git archive``): before and after in one invocation.

A session starts new processes for every side (two processes of the same program differ by a
few per cent in speed, from their memory layout: ``--sessions`` of them average that out; all
run with one hash seed). Each round runs ``--runs`` sequential runs of the 4-node flow on each
side, the sides taking turns run by run (so that all see the same machine), then
``--concurrent`` at once on each. Latency: from ``start_run`` to the run's ``finished_at``; a
round's figure is the median of its runs, a session's the median of its rounds'. CPU: the
worker's processes (every thread: the span exporter's, gRPC's, the heartbeat's) and the
starting process (less its polling for the end of its runs), per run: over the rounds, and
over the whole session (from after the warm-up to 6 s after the last round, every span
exported). Reported per session, then the median over the sessions of each side's ratio to
off, with the load average. CPU time is the robust figure on a loaded machine: latency moves
with the load of the moment. Goal: at most 10 % more latency.
"""

from __future__ import annotations

import argparse
import json
import os
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


#: Waited after a session's last round before its CPU is read: the span processors export
#: what they hold every 5 s (``OTEL_BSP_SCHEDULE_DELAY``).
EXPORT_WAIT_S = 6


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
        # The whole session, from here to its end (its spans exported).
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
        """What was observed, the CPU of the whole session per run (from after the warm-up to
        now: the last rounds' spans exported), then stop the worker and the sink."""
        figures = ""
        session: dict[str, float] = {}
        try:
            if self.sink is not None and self.worker is not None:
                figures = self.observed()
        finally:
            if hasattr(self, "session") and self.session["runs"] and self.worker is not None:
                # (the caller has waited for the span processors' last scheduled export)
                runs = self.session["runs"]
                worker = sum(process_cpu_s(pid) for pid in self.worker.pids())
                worker -= self.session["worker"]
                starter = time.process_time() - self.session["starter"]
                starter -= self.session["poll"] + self.poll_cpu
                session = {"worker": worker / runs * 1000, "starter": starter / runs * 1000}
            if self.worker is not None:
                self.worker.stop()
            if getattr(self, "peer", None) is not None:
                self.peer.stop()
            if self.sink is not None:
                from flowplatform import telemetry

                telemetry.shutdown()  # the starting process's last spans
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
        from bench.common import worker_node_runs

        node_runs = worker_node_runs()
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
    parser.add_argument("--sessions", type=int, default=3, help="each with new processes")
    parser.add_argument("--rounds", type=int, default=15, help="rounds per session")
    parser.add_argument("--runs", type=int, default=15, help="sequential runs per round")
    parser.add_argument("--concurrent", type=int, default=10, help="runs at once per round")
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
    specs: list[tuple[str, bool, dict[str, str], Path]] = [
        ("off", False, extra, ROOT),
        ("on", True, extra, ROOT),
    ]
    if args.off_twice:
        specs.append(("off-again", False, extra, ROOT))
    for item in args.also:
        name, path = item.split("=", 1)
        specs.append((name, True, extra, Path(path).resolve()))
    for item in args.variant:
        name, _, assignments = item.partition(":")
        variables = dict(a.split("=", 1) for a in assignments.split())
        specs.append((name, True, {**extra, **variables}, ROOT))
    load_before = os.getloadavg()
    sessions = []
    for number in range(1, args.sessions + 1):
        print(f"session {number} of {args.sessions}: new processes for every side", flush=True)
        # Each session starts the sides in another order: the side started first was measured
        # slower by up to 20 % (two identical off sides), whatever it was.
        shift = (number - 1) % len(specs)
        sessions.append(session(specs[shift:] + specs[:shift], args))
    summary(sessions, [spec[0] for spec in specs], args, load_before, extra)


def session(specs: list[tuple[str, bool, dict[str, str], Path]], args: argparse.Namespace) -> Any:
    """Rounds on new processes for every side; what each side measured in them."""
    sides: list[Child] = []
    results: dict[str, list[dict[str, Any]]] = {spec[0]: [] for spec in specs}
    closed: dict[str, dict[str, Any]] = {}
    try:
        for spec in specs:
            sides.append(Child(*spec))
        for number in range(1, args.rounds + 1):
            outcome = one_round(sides, number, args.runs, args.concurrent)
            if isinstance(outcome, str):
                print(f"  round {number:2}: left out, {outcome}", flush=True)
                continue
            figures = []
            for side in sides:
                results[side.name].append(outcome[side.name])
                answer = outcome[side.name]
                figures.append(
                    f"{side.name} {answer['latency'] * 1000:5.1f} ms {cpu_per_run([answer]):5.1f} ms"
                )
            print(
                f"  round {number:2} (latency, CPU/run): {'; '.join(figures)}; "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    finally:
        time.sleep(EXPORT_WAIT_S)  # the spans of the last rounds exported, as they would be
        for side in sides:
            closed[side.name] = side.close()
    report(results, args, closed)
    return {"results": results, "closed": closed}


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
    closed: dict[str, dict[str, Any]],
) -> None:
    """One session's figures."""
    off = results["off"]
    names = list(results)
    if not off:
        print("  no round completed")
        return
    for name in names[1:]:
        print(f"  {name}: {closed[name]['observed']}")
    print(f"  {len(off)} rounds; latency, median of the rounds' medians (quartiles, range):")
    for name in names:
        values = [r["latency"] * 1000 for r in results[name]]
        print(f"    {name}: {statistics.median(values):.1f} ms ({spread(values)})")
    print("  CPU per run over the rounds: worker (its pool processes' other threads: span")
    print("  export, gRPC, heartbeat) + starting process (its other threads) = total;")
    print("  over the whole session (every span exported):")
    for name in names:
        rounds, whole = results[name], closed[name]["session"]
        print(
            f"    {name}: {cpu_per_run(rounds, 'worker_cpu'):.2f} "
            f"({cpu_per_run(rounds, 'threads_cpu'):.2f}) + {cpu_per_run(rounds, 'starter_cpu'):.2f}"
            f" ({cpu_per_run(rounds, 'starter_threads_cpu'):.2f}) = {cpu_per_run(rounds):.2f} ms;"
            f" whole session {whole['worker'] + whole['starter']:.2f} ms"
        )
    if args.concurrent:
        figures = [
            f"{name} {statistics.median(r['throughput'] for r in results[name]):.1f}"
            for name in names
        ]
        print(f"  throughput, {args.concurrent} at once, runs/s: {'; '.join(figures)}")
    for name in names[1:]:
        ratios = session_ratios(results, closed, name)
        print(
            f"  {name}/off: latency {ratios['latency']:.3f} (per round: quartiles "
            f"{ratios['latency_q1']:.2f}-{ratios['latency_q3']:.2f}), CPU {ratios['cpu']:.3f} "
            f"(per round: {ratios['cpu_q1']:.2f}-{ratios['cpu_q3']:.2f}), whole session CPU "
            f"{ratios['whole']:.3f}",
            flush=True,
        )


def session_ratios(
    results: dict[str, list[dict[str, Any]]], closed: dict[str, dict[str, Any]], name: str
) -> dict[str, float]:
    """A side's figures over off's in one session: latency (median of the rounds' medians),
    CPU per run (all rounds; whole session), and the quartiles of the per-round ratios."""
    off, on = results["off"], results[name]
    latency = [b["latency"] / a["latency"] for a, b in zip(off, on, strict=True)]
    cpu = [cpu_per_run([b]) / cpu_per_run([a]) for a, b in zip(off, on, strict=True)]
    quartile = (
        (lambda v: statistics.quantiles(v, n=4))
        if len(off) >= 4
        else (lambda v: [min(v), 0, max(v)])
    )
    whole_off, whole_on = closed["off"]["session"], closed[name]["session"]
    lat_q = quartile(latency)
    cpu_q = quartile(cpu)
    return {
        "latency": statistics.median(r["latency"] for r in on)
        / statistics.median(r["latency"] for r in off),
        "latency_q1": lat_q[0],
        "latency_q3": lat_q[2],
        "cpu": cpu_per_run(on) / cpu_per_run(off),
        "cpu_q1": cpu_q[0],
        "cpu_q3": cpu_q[2],
        "whole": (whole_on["worker"] + whole_on["starter"])
        / (whole_off["worker"] + whole_off["starter"]),
        "latency_ms": statistics.median(r["latency"] for r in on) * 1000,
        "cpu_ms": cpu_per_run(on),
    }


def summary(
    sessions: list[Any],
    names: list[str],
    args: argparse.Namespace,
    load_before: tuple[float, float, float],
    extra: dict[str, str],
) -> None:
    """The figures over the sessions: the median of the sessions' and their range."""
    done = [s for s in sessions if s["results"]["off"]]
    load_after = os.getloadavg()
    print()
    print(f"on sides: every default, plus {extra}" if extra else "on sides: every default")
    print(
        f"{len(done)} sessions of {args.rounds} rounds; in each round every side ran "
        f"{args.runs} runs in a row"
        + (f" and {args.concurrent} at once" if args.concurrent else "")
    )
    print(
        f"load average (1, 5, 15 min): before {' '.join(f'{x:.1f}' for x in load_before)}, "
        f"after {' '.join(f'{x:.1f}' for x in load_after)} (2 cores)"
    )
    off_latency = [
        statistics.median(r["latency"] for r in s["results"]["off"]) * 1000 for s in done
    ]
    off_cpu = [cpu_per_run(s["results"]["off"]) for s in done]
    print(
        f"off: latency {statistics.median(off_latency):.1f} ms (sessions {fmt(off_latency)}), "
        f"CPU per run {statistics.median(off_cpu):.2f} ms (sessions {fmt(off_cpu)})"
    )
    for name in names[1:]:
        ratios = [session_ratios(s["results"], s["closed"], name) for s in done]
        column = {key: [r[key] for r in ratios] for key in ratios[0]}
        print(
            f"{name}: latency {statistics.median(column['latency_ms']):.1f} ms, CPU per run "
            f"{statistics.median(column['cpu_ms']):.2f} ms"
        )
        print(
            f"  {name}/off latency: median of the sessions {statistics.median(column['latency']):.3f}"
            f" (sessions {fmt(column['latency'])}) (goal <= 1.10)"
        )
        print(
            f"  {name}/off CPU per run: median of the sessions {statistics.median(column['cpu']):.3f}"
            f" (sessions {fmt(column['cpu'])}); whole sessions "
            f"{statistics.median(column['whole']):.3f} ({fmt(column['whole'])})"
        )


def fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" if v < 10 else f"{v:.1f}" for v in values)


if __name__ == "__main__":
    main()
