"""Each step's losses and SIGTERM flag, read on the host one step late.

Reading a CUDA tensor waits for every kernel queued before the read, so a loss read right after
step k leaves the GPU idle while the host queues step k+1. Instead step k's numbers are reduced
over the ranks and copied to pinned memory behind step k's kernels, with an event after them;
the host reads them once step k+1 is queued, waiting only for step k. Ranks push the same steps
and read them in the same order, so they agree on when SIGTERM stops them. On the CPU the copy
is immediate and the order of things the same.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StepResult:
    step: int
    losses: list[float]  # total, instance, prior: means over the ranks
    stop: bool  # some rank had SIGTERM by the end of this step
    learning_rate: float
    seconds: float  # from the end of the step before (or of ``Readout``'s start) to this one's


def _mark(device: torch.device):
    """A point in the device's timeline: a timing event on CUDA, the host clock elsewhere."""
    if device.type != "cuda":
        return time.perf_counter()
    event = torch.cuda.Event(enable_timing=True)
    event.record()
    return event


def _seconds(start, end) -> float:
    if isinstance(end, float):
        return end - start
    end.synchronize()
    return start.elapsed_time(end) / 1000


class Readout:
    def __init__(self, mean, device: torch.device):
        """``mean(tensor) -> tensor``: the elementwise mean over the ranks (a collective)."""
        self.mean, self.last = mean, _mark(device)
        self.pending: collections.deque = collections.deque()

    def push(self, step: int, losses: torch.Tensor, stop: bool, learning_rate: float) -> None:
        """Queue step ``step``'s numbers (``losses`` on the device); never waits for the device."""
        flag = torch.full((1,), float(stop), device=losses.device)  # a fill kernel, not a host copy
        values = self.mean(torch.cat([losses.detach().float(), flag]))
        if values.is_cuda:
            host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
            values = host.copy_(values, non_blocking=True)
        mark = _mark(losses.device)  # after the copy: once it is reached, the numbers are there
        self.pending.append((step, values, self.last, mark, learning_rate))
        self.last = mark

    def retire(self, keep: int = 1) -> list[StepResult]:
        """The results of every pushed step except the newest ``keep``, oldest first
        (``keep=0``: all of them, which waits for the device to finish the last step)."""
        results = []
        while len(self.pending) > keep:
            step, values, start, end, learning_rate = self.pending.popleft()
            seconds = _seconds(start, end)  # on CUDA this waits for the step's end
            *losses, stop = values.tolist()
            results.append(StepResult(step, losses, stop > 0, learning_rate, seconds))
        return results
