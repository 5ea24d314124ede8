"""Step results reach the host one step late, in order, and all of them at a sync."""

from __future__ import annotations

import time

import torch
from dreambooth_trainer.readout import Readout


def halved(values: torch.Tensor) -> torch.Tensor:
    """Stands for the mean over two ranks of which the other reported zeros."""
    return values / 2


def test_results_lag_one_step_and_a_sync_reads_them_all():
    readout = Readout(halved, torch.device("cpu"))
    readout.push(1, torch.tensor([4.0, 2.0, 2.0]), stop=False, learning_rate=1e-4)
    assert readout.retire(keep=1) == []
    readout.push(2, torch.tensor([6.0, 4.0, 2.0]), stop=True, learning_rate=2e-4)
    (first,) = readout.retire(keep=1)
    assert (first.step, first.losses, first.stop, first.learning_rate) == (1, [2.0, 1.0, 1.0], False, 1e-4)
    readout.push(3, torch.tensor([2.0, 2.0, 0.0]), stop=False, learning_rate=3e-4)
    second, third = readout.retire(keep=0)
    assert (second.step, second.losses, second.stop) == (2, [3.0, 2.0, 1.0], True)  # half the ranks: stop
    assert (third.step, third.stop) == (3, False)
    assert all(r.seconds >= 0 for r in (first, second, third))
    assert readout.retire(keep=0) == []


def test_seconds_are_the_time_from_the_previous_step_end():
    readout = Readout(halved, torch.device("cpu"))
    readout.push(1, torch.zeros(3), stop=False, learning_rate=0.0)
    time.sleep(0.05)  # a step that takes at least 50 ms
    readout.push(2, torch.zeros(3), stop=False, learning_rate=0.0)
    first, second = readout.retire(keep=0)
    assert second.seconds >= 0.05 and first.seconds >= 0
