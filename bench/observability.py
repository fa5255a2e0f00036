"""Observability overhead: the overhead benchmark with tracing and metrics off, then on.

    .venv/bin/python bench/observability.py [--rounds 3] [--runs 40] [--concurrent 100]

Each round runs ``bench/overhead.py`` twice in turn (off, then ``--observe``), so both see the
same machine; the medians over the rounds are compared. Goal: at most 10 % more latency.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LATENCY = re.compile(r"latency, median of \d+: flow ([\d.]+) ms")
THROUGHPUT = re.compile(r"throughput, \d+ at once: flow ([\d.]+) runs/s")
CPU = re.compile(r"CPU per flow run: worker ([\d.]+) ms, starting process ([\d.]+) ms")


def once(runs: int, concurrent: int, observe: bool) -> tuple[float, float, float]:
    args = [
        sys.executable,
        str(ROOT / "bench" / "overhead.py"),
        "--runs",
        str(runs),
        "--rounds",
        "1",
    ]
    args += ["--concurrent", str(concurrent)] + (["--observe"] if observe else [])
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True, timeout=1800)
    latency, throughput = LATENCY.search(out.stdout), THROUGHPUT.search(out.stdout)
    cpu = CPU.search(out.stdout)
    if latency is None or throughput is None or cpu is None:
        raise SystemExit(f"unexpected output:\n{out.stdout}\n{out.stderr}")
    for line in out.stdout.splitlines():
        if line.startswith("observed:"):
            print(f"  {line}")
    total_cpu = float(cpu.group(1)) + float(cpu.group(2))
    return float(latency.group(1)), float(throughput.group(1)), total_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--concurrent", type=int, default=100)
    args = parser.parse_args()
    off: list[tuple[float, float, float]] = []
    on: list[tuple[float, float, float]] = []
    for round_ in range(1, args.rounds + 1):
        off.append(once(args.runs, args.concurrent, observe=False))
        on.append(once(args.runs, args.concurrent, observe=True))
        print(
            f"round {round_}: off {off[-1][0]:.1f} ms, {off[-1][1]:.1f} runs/s, "
            f"{off[-1][2]:.1f} ms CPU/run; on {on[-1][0]:.1f} ms, {on[-1][1]:.1f} runs/s, "
            f"{on[-1][2]:.1f} ms CPU/run"
        )
    lat_off = statistics.median(x[0] for x in off)
    lat_on = statistics.median(x[0] for x in on)
    tp_off = statistics.median(x[1] for x in off)
    tp_on = statistics.median(x[1] for x in on)
    cpu_off = statistics.median(x[2] for x in off)
    cpu_on = statistics.median(x[2] for x in on)
    print(f"latency, median of rounds: off {lat_off:.1f} ms, on {lat_on:.1f} ms")
    print(
        f"CPU per run (worker + starter), median of rounds: off {cpu_off:.1f} ms, on {cpu_on:.1f} ms"
    )
    print(f"throughput, median of rounds: off {tp_off:.1f} runs/s, on {tp_on:.1f} runs/s")
    print(f"latency ratio on/off: {lat_on / lat_off:.2f} (goal <= 1.10)")
    print(f"throughput ratio on/off: {tp_on / tp_off:.2f}")
    print(f"CPU ratio on/off: {cpu_on / cpu_off:.2f}")


if __name__ == "__main__":
    main()
