"""Schedules benchmark: 10,000 enabled schedules, beat's per-tick cost and due-to-run lag.

    .venv/bin/python bench/schedules.py [--schedules 10000] [--tick-window 20] [--window 60]

A scratch PostgreSQL database (``fp_bench_schedules`` on the server of ``DATABASE_URL``,
re-created) and Redis (``CELERY_BROKER_URL``, default ``redis://127.0.0.1:6379/12``) on loopback.
The schedules are interval schedules every 10 minutes on 100 flows, their due times spread
evenly (about 17 firings a second), so every second of a window has work.

1. per-tick cost, in-process, of ``GuardedScheduler`` and of django-celery-beat's plain
   ``DatabaseScheduler`` over the same 10,000 PeriodicTasks (for the plain one, each task's
   ``last_run_at`` is set so it comes due at the same instant as ours): the time to load the
   schedule, each ``tick()`` (idle ticks and ticks that send), and the beat-side lag from due
   time to message sent. Messages go to a queue nobody reads.
2. the fire task's cost per firing, in-process (what bounds a worker's firings per second);
3. end to end, real processes: ``celery beat`` with the guarded scheduler and one ``celery
   worker`` (2 processes) on the fire queue; lag from each interval's due time (its end) to
   the creation of its run, over ``--window`` seconds. Runs are created and dispatched; their
   node tasks go to a queue nobody reads (this measures scheduling, not flows).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "fp_bench_schedules"
EVERY_S = 600
FLOWS = 100


def configure() -> dict[str, str]:
    server = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/x").rsplit("/", 1)[
        0
    ]
    tag = str(os.getpid())
    env = {
        "DATABASE_URL": f"{server}/{DB_NAME}",
        "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/12"),
        "CELERY_TASK_DEFAULT_QUEUE": f"bench-runs-{tag}",
        "FLOWPLATFORM_SCHEDULE_QUEUE": f"bench-fire-{tag}",
        "FLOWPLATFORM_BEAT_LOCK_KEY": f"bench-lease-{tag}",
        "FLOW_DATA_STORAGE": tempfile.mkdtemp(prefix="flowplatform-bench-"),
        "FLOWPLATFORM_LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "flowplatform.settings",
    }
    sys.path.insert(0, str(ROOT))
    from bench.common import BENCH_SECRET_KEY

    env["FLOWPLATFORM_SECRET_KEY"] = os.environ.get("FLOWPLATFORM_SECRET_KEY", BENCH_SECRET_KEY)
    os.environ.update(env)
    import psycopg

    admin = f"{server}/postgres".replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{DB_NAME}" with (force)')
        conn.execute(f'create database "{DB_NAME}"')
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return env


def populate(count: int) -> None:
    from bench.common import source_url
    from flows.flowfile import apply_flow_file
    from nodes.models import Connection
    from scheduling.models import FlowSchedule
    from scheduling.sync import bulk_create_entries

    flow_file = json.loads((ROOT / "examples" / "paid-orders.json").read_text())
    # A flow naming a missing connection cannot be saved; these are never reached.
    for name, url in (("warehouse", source_url()), ("crm", "http://127.0.0.1:9/")):
        connection = Connection.objects.filter(name=name).first() or Connection(name=name)
        connection.set_url(url)
        connection.save()
    flows = [apply_flow_file({**flow_file, "slug": f"bench-{i}"})[0] for i in range(FLOWS)]
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=EVERY_S)
    step = timedelta(seconds=EVERY_S) / count
    schedules = FlowSchedule.objects.bulk_create(
        (
            FlowSchedule(
                flow=flows[i % FLOWS],
                kind="interval",
                every_seconds=EVERY_S,
                start_at=base + i * step,  # anchors spread evenly over one period
                overlap="allow",
                position=i // FLOWS,
            )
            for i in range(count)
        ),
        batch_size=1000,
    )
    bulk_create_entries(schedules)


def reset_clock() -> datetime:
    """Nothing overdue: every schedule's count starts now."""
    from scheduling.models import FlowSchedule

    now = datetime.now(UTC)
    FlowSchedule.objects.update(timing_changed_at=now, last_fired_at=None)
    return now


def align_baseline(now: datetime) -> None:
    """Give each PeriodicTask the last_run_at that makes celery's interval come due when ours
    does (celery: due = last_run_at + run_every)."""
    from django_celery_beat.models import PeriodicTask

    tasks = list(
        PeriodicTask.objects.filter(task="scheduling.fire").select_related("flow_schedule")
    )
    for task in tasks:
        due = task.flow_schedule.timetable().next_after(now)
        task.last_run_at = due - timedelta(seconds=EVERY_S)
    PeriodicTask.objects.bulk_update(tasks, ["last_run_at"], batch_size=1000)


def measured(base: type) -> type:
    """The scheduler class, recording each tick's duration and each send's lag."""

    class Measured(base):  # type: ignore[valid-type, misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.lags: list[float] = []
            super().__init__(*args, **kwargs)

        def apply_entry(self, entry: Any, producer: Any = None) -> None:
            due = getattr(entry, "due_at", None)
            if due is None and getattr(entry, "task", "") == "scheduling.fire":
                due = entry.last_run_at + entry.schedule.run_every
            super().apply_entry(entry, producer=producer)
            if due is not None and entry.task == "scheduling.fire":
                self.lags.append((datetime.now(UTC) - due).total_seconds())

    return Measured


def tick_bench(
    scheduler_cls: type, window: float, warmup: float, edit_every: float
) -> dict[str, Any]:
    """Run the scheduler's loop in-process as celery beat does: ``warmup`` seconds unmeasured
    (the backlog of the load drains), then ``window`` seconds measured. Every ``edit_every``
    seconds a schedule is edited (as from the admin), and the tick that picks it up is timed."""
    from flowplatform.celery import app
    from scheduling.models import FlowSchedule

    started = time.perf_counter()
    scheduler = measured(scheduler_cls)(app=app)
    scheduler.tick()  # the first tick builds the heap (and takes the lease)
    load_s = time.perf_counter() - started
    loop(scheduler, warmup, [], [])
    scheduler.lags.clear()
    idle: list[float] = []
    sending: list[float] = []
    edits: list[float] = []
    editable = list(FlowSchedule.objects.select_related("flow").order_by("?")[:100])
    deadline = time.monotonic() + window
    next_edit = time.monotonic() + edit_every
    while time.monotonic() < deadline:
        if time.monotonic() >= next_edit:
            schedule = editable.pop()
            schedule.every_seconds = EVERY_S - 1  # a new interval: its PeriodicTask changes,
            schedule.save()  # beat must notice and reload it
            next_edit += edit_every
            scheduler._last_change_check = 0  # type: ignore[attr-defined]
            t0 = time.perf_counter()
            scheduler.tick()
            edits.append(time.perf_counter() - t0)
        loop(scheduler, min(0.5, deadline - time.monotonic()), idle, sending)
    scheduler.close()
    return {
        "load_s": load_s,
        "idle": idle,
        "sending": sending,
        "edits": edits,
        "lags": scheduler.lags,
    }


def loop(scheduler: Any, seconds: float, idle: list[float], sending: list[float]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sent_before = len(scheduler.lags)
        t0 = time.perf_counter()
        delay = scheduler.tick()
        spent = time.perf_counter() - t0
        (sending if len(scheduler.lags) > sent_before else idle).append(spent)
        remaining = deadline - time.monotonic()
        if delay and delay > 0 and remaining > 0:
            time.sleep(min(delay, remaining))


def end_to_end(env: dict[str, str], window: float, concurrency: int) -> dict[str, Any]:
    from scheduling.models import ScheduledRun

    logs = Path(tempfile.mkdtemp(prefix="bench-schedules-"))
    common = {**os.environ, **env}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "flowplatform",
            "worker",
            "--loglevel",
            "WARNING",
            "--concurrency",
            str(concurrency),
            "--pool",
            "prefork",
            "--queues",
            env["FLOWPLATFORM_SCHEDULE_QUEUE"],
            "--hostname",
            f"bench-fire-{os.getpid()}@localhost",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env=common,
        cwd=ROOT,
        stdout=(logs / "worker.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    reset_clock()
    beat = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "flowplatform",
            "beat",
            "--loglevel",
            "INFO",
            "-S",
            "scheduling.beat:GuardedScheduler",
            "--schedule",
            str(logs / "beat-schedule"),
        ],
        env=common,
        cwd=ROOT,
        stdout=(logs / "beat.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while "holding the beat lease" not in (logs / "beat.log").read_text():
            if time.monotonic() > deadline or beat.poll() is not None:
                raise SystemExit(f"beat did not start; see {logs / 'beat.log'}")
            time.sleep(0.2)
        time.sleep(15)  # warm-up: the backlog of beat's start-up drains, caches fill
        start = datetime.now(UTC)
        time.sleep(window)
        end = datetime.now(UTC)
        time.sleep(5)  # let the last firings of the window land
    finally:
        beat.terminate()
        worker.terminate()
        beat.wait(30)
        worker.wait(30)
    records = list(
        ScheduledRun.objects.filter(interval_end__gte=start, interval_end__lt=end).select_related(
            "run"
        )
    )
    lags = [(r.run.created_at - r.interval_end).total_seconds() for r in records if r.run]
    expected = round(len_schedules() * window / EVERY_S)
    return {"lags": lags, "expected": expected, "records": len(records), "logs": str(logs)}


def fire_cost(count: int) -> dict[str, list[float]]:
    """The fire task's work, in-process and one at a time: what a worker process spends per
    firing (whole task), and how much of it is ``start_run`` itself."""
    from flows import services
    from scheduling.firing import fire_schedule
    from scheduling.models import FlowSchedule

    # Each schedule has exactly one fire time in the last 10 minutes: each firing makes a run.
    FlowSchedule.objects.update(
        timing_changed_at=datetime.now(UTC) - timedelta(seconds=EVERY_S), last_fired_at=None
    )
    spent_in_start_run: list[float] = []
    original = services.start_run

    def timed_start_run(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent_in_start_run.append(time.perf_counter() - t0)

    import scheduling.firing

    scheduling.firing.start_run = timed_start_run  # type: ignore[assignment]
    whole: list[float] = []
    try:
        for schedule_id in FlowSchedule.objects.order_by("?").values_list("pk", flat=True)[:count]:
            t0 = time.perf_counter()
            fire_schedule(schedule_id)
            whole.append(time.perf_counter() - t0)
    finally:
        scheduling.firing.start_run = original  # type: ignore[assignment]
    return {"whole": whole, "start_run": spent_in_start_run}


def len_schedules() -> int:
    from scheduling.models import FlowSchedule

    return FlowSchedule.objects.count()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def describe(name: str, values: list[float], unit: float = 1000, suffix: str = "ms") -> str:
    if not values:
        return f"{name:<34} (none)"
    return (
        f"{name:<34} n={len(values):<6} p50={pct(values, 0.5) * unit:8.2f}{suffix} "
        f"p95={pct(values, 0.95) * unit:8.2f}{suffix} max={max(values) * unit:8.2f}{suffix}"
    )


def cleanup(env: dict[str, str]) -> None:
    import redis

    client = redis.Redis.from_url(env["CELERY_BROKER_URL"])
    for key in (
        env["CELERY_TASK_DEFAULT_QUEUE"],
        env["FLOWPLATFORM_SCHEDULE_QUEUE"],
        env["FLOWPLATFORM_BEAT_LOCK_KEY"],
    ):
        client.delete(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--schedules", type=int, default=10000)
    parser.add_argument("--tick-window", type=float, default=20, help="seconds per scheduler")
    parser.add_argument("--window", type=float, default=60, help="end-to-end seconds measured")
    parser.add_argument("--edit-every", type=float, default=5, help="seconds between edits")
    parser.add_argument("--fire-concurrency", type=int, default=2, help="fire worker processes")
    args = parser.parse_args()
    env = configure()
    from django_celery_beat.schedulers import DatabaseScheduler

    from scheduling.beat import GuardedScheduler

    try:
        t0 = time.perf_counter()
        populate(args.schedules)
        print(
            f"{args.schedules} schedules on {FLOWS} flows created in {time.perf_counter() - t0:.1f}s"
        )
        reset_clock()
        ours = tick_bench(GuardedScheduler, args.tick_window, 5, args.edit_every)
        cleanup(env)
        align_baseline(datetime.now(UTC) + timedelta(seconds=5))
        plain = tick_bench(DatabaseScheduler, args.tick_window, 5, args.edit_every)
        cleanup(env)
        cost = fire_cost(300)
        cleanup(env)
        e2e = end_to_end(env, args.window, args.fire_concurrency)
    finally:
        cleanup(env)
    print()
    print(f"per-tick cost, {args.schedules} schedules, {args.tick_window:.0f}s each")
    for label, result in (("guarded", ours), ("plain DatabaseScheduler", plain)):
        print(f"  {label}: schedule load + first tick {result['load_s']:.2f}s")
        print("    " + describe("idle tick", result["idle"]))
        print("    " + describe("tick that sends", result["sending"]))
        print("    " + describe("tick that picks up an edit", result["edits"]))
        print("    " + describe("due -> sent (beat side)", result["lags"]))
    ratio_idle = statistics.mean(plain["idle"] or [0]) / max(
        statistics.mean(ours["idle"] or [1]), 1e-9
    )
    ratio_send = statistics.mean(plain["sending"] or [0]) / max(
        statistics.mean(ours["sending"] or [1]), 1e-9
    )
    ratio_edit = statistics.mean(plain["edits"] or [0]) / max(
        statistics.mean(ours["edits"] or [1]), 1e-9
    )
    print(
        f"  mean tick, plain / guarded: idle x{ratio_idle:.1f}, sending x{ratio_send:.1f}, "
        f"edit x{ratio_edit:.1f}"
    )
    print()
    print("fire task, in-process, one at a time (each firing creates and dispatches a run)")
    print("    " + describe("whole fire task", cost["whole"]))
    print("    " + describe("  of which start_run", cost["start_run"]))
    print()
    print(
        f"end to end (beat + 1 worker x{args.fire_concurrency} processes), "
        f"{args.window:.0f}s window"
    )
    print("    " + describe("due -> run created", e2e["lags"]))
    print(
        f"    intervals due in window: {e2e['expected']} expected, {e2e['records']} recorded, "
        f"{len(e2e['lags'])} runs; logs in {e2e['logs']}"
    )


if __name__ == "__main__":
    main()
