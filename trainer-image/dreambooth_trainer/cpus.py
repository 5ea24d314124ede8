"""Intra-op threads sized to the CPUs the container may use, not the node's.

PyTorch starts one thread per CPU it may run on, and a Kubernetes CPU limit (a CFS quota)
does not narrow that set: a pod limited to 4 CPUs on a 64-core node would run 64 threads in
4 CPUs' time, throttled at every parallel region. The budget is the quota rounded up, at most
the CPUs the process may run on, shared by the pod's local workers.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

log = logging.getLogger(__name__)

CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"


def quota_cpus(cpu_max: str) -> int | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` line, rounded up; None when unlimited or unreadable."""
    fields = cpu_max.split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None


def thread_budget(cpu_max: str | None, usable_cpus: int, local_workers: int) -> int:
    """Intra-op threads for one of ``local_workers`` processes sharing the container's CPUs."""
    cpus = min(filter(None, (quota_cpus(cpu_max or ""), usable_cpus)))
    return max(1, cpus // max(1, local_workers))


def size_threads(env=None) -> int | None:
    """Set torch's intra-op threads to this worker's share; an explicit OMP_NUM_THREADS wins."""
    env = os.environ if env is None else env
    if env.get("OMP_NUM_THREADS"):
        return None
    import torch

    try:
        cpu_max = CPU_MAX.read_text()
    except OSError:
        cpu_max = None
    threads = thread_budget(cpu_max, len(os.sched_getaffinity(0)), int(env.get("LOCAL_WORLD_SIZE", "1")))
    if threads != torch.get_num_threads():
        log.info("intra-op threads: %d (was %d; CPU quota %s)", threads, torch.get_num_threads(),
                 (cpu_max or "none").strip())
        torch.set_num_threads(threads)
    return threads
