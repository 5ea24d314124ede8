"""The trainer's intra-op threads follow the container's CPU quota, shared by its workers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from dreambooth_trainer.cpus import quota_cpus, size_threads, thread_budget


@pytest.mark.parametrize("cpu_max, cpus", [
    ("max 100000\n", None), ("400000 100000\n", 4), ("150000 100000", 2), ("50000 100000", 1),
    ("", None), ("garbage", None), ("12 x", None), ("0 100000", None),
])
def test_quota_cpus_reads_cgroup_v2_cpu_max(cpu_max, cpus):
    assert quota_cpus(cpu_max) == cpus


def test_the_budget_is_the_quota_or_the_usable_cpus_whichever_is_fewer_shared_by_workers():
    assert thread_budget("400000 100000", usable_cpus=64, local_workers=1) == 4
    assert thread_budget("400000 100000", usable_cpus=2, local_workers=1) == 2
    assert thread_budget("max 100000", usable_cpus=64, local_workers=8) == 8
    assert thread_budget("200000 100000", usable_cpus=64, local_workers=8) == 1
    assert thread_budget(None, usable_cpus=3, local_workers=1) == 3


def test_an_explicit_omp_num_threads_wins_else_torch_gets_the_budget():
    before = torch.get_num_threads()
    try:
        assert size_threads({"OMP_NUM_THREADS": "3"}) is None and torch.get_num_threads() == before
        torch.set_num_threads(1)
        threads = size_threads({"LOCAL_WORLD_SIZE": "1"})
        assert threads >= 1 and torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("preset, expected", [(None, "1000"), ("300000", "300000")])
def test_idle_openmp_workers_sleep_soon_unless_told_otherwise(preset, expected):
    """The spin count reaches libgomp only if set before torch loads: importing the trainer does."""
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    env |= {"GOMP_SPINCOUNT": preset} if preset else {}
    code = "import os, dreambooth_trainer, torch; print(os.environ['GOMP_SPINCOUNT'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == expected
