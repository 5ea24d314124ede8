"""What bench/operator_scale.py prints: each round's figures and the summary table."""

from __future__ import annotations

import os
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass

from bench.measure import Arrival, Cost, percentile


@contextmanager
def phase(what: str):
    started = time.monotonic()
    yield
    print(f"  [{what}: {time.monotonic() - started:.0f} s; load average {os.getloadavg()[0]:.1f}]")


@dataclass
class Round:
    count: int
    total: int
    training: int
    operator: Arrival
    anchor: Arrival
    cost: Cost
    rss: tuple[float, float]


def print_round(r: Round) -> None:
    op, anchor = r.operator, r.anchor
    for what, a, child in (("operator", op, "child Job"), ("anchor", anchor, "Pod")):
        print(f"  {what:<8} applied {len(a.sent)} in {a.apply_seconds:.1f} s ({len(a.sent) / a.apply_seconds:.1f}/s); "
              f"last first {child} {a.last:.1f} s after the first apply; missing {len(a.missing)}"
              + (f": {', '.join('/'.join(k) for k in a.missing[:5])}{' …' if len(a.missing) > 5 else ''}"
                 if a.missing else ""))
    print(f"  ({r.training} of the {r.count} without priors: their first child is train-0)")
    print(f"  {'':34} {'p50 s':>8} {'p99 s':>8} {'max s':>8}")
    for label, a in (("apply → first child Job", op), ("anchor: Job → first Pod", anchor)):
        lat = a.latencies
        print(f"  {label:<34} {percentile(lat, 0.5):>8.2f} {percentile(lat, 0.99):>8.2f} "
              f"{max(lat, default=float('nan')):>8.2f}")
    print(f"  {'operator / anchor':<34} {_ratio(op, anchor, 0.5):>7.1f}x {_ratio(op, anchor, 0.99):>7.1f}x")
    print(f"  operator RSS {r.rss[0]:.0f} MiB, peak (VmHWM) {r.rss[1]:.0f} MiB")
    r.cost.print("arrival (first apply → last first child)")


def _ratio(op: Arrival, anchor: Arrival, q: float) -> float:
    return percentile(op.latencies, q) / (percentile(anchor.latencies, q) or float("nan"))


def print_summary(rounds: list[Round], idle_cost: Cost | None, phases: Counter, interval: float) -> None:
    print("\n== summary: op = apply → first child Job, Job = anchor Job → first Pod (s), x = op / Job; "
          "missing: DreamBoothJobs without a child; CPU (% of a core), apiserver and S3 requests per minute "
          "while jobs arrive; RSS and peak in MiB")
    header = ("jobs", "total", "op p50", "op p99", "Job p50", "Job p99", "p50 x", "p99 x", "missing",
              "CPU %", "RSS", "peak", "api/min", "S3/min")
    print("".join(f"{h:>9}" for h in header))
    for r in rounds:
        op, anchor = r.operator.latencies, r.anchor.latencies
        row = (r.count, r.total, f"{percentile(op, 0.5):.2f}", f"{percentile(op, 0.99):.2f}",
               f"{percentile(anchor, 0.5):.2f}", f"{percentile(anchor, 0.99):.2f}",
               f"{_ratio(r.operator, r.anchor, 0.5):.1f}", f"{_ratio(r.operator, r.anchor, 0.99):.1f}",
               len(r.operator.missing), f"{r.cost.cpu_percent:.0f}", f"{r.rss[0]:.0f}", f"{r.rss[1]:.0f}",
               f"{r.cost.per_minute(sum(r.cost.apiserver.values())):.0f}",
               f"{r.cost.per_minute(sum(r.cost.s3.values())):.0f}")
        print("".join(f"{v:>9}" for v in row))
    if idle_cost:
        training = phases.get("Training", 0)
        print(f"idle with {sum(phases.values())} jobs ({training} in Training): "
              f"CPU {idle_cost.cpu_percent:.0f} %, "
              f"apiserver {idle_cost.per_minute(sum(idle_cost.apiserver.values())):.0f}/min, "
              f"S3 {idle_cost.per_minute(sum(idle_cost.s3.values())):.0f}/min "
              f"(ceiling {training * 60 / interval:.0f}/min)")
