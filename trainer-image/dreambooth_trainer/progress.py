"""Training progress for the operator's status: a small JSON object at ``progressUri``.

Written by rank 0 when a run starts or resumes, after each checkpoint, at the end, and in
between at most every ``every_seconds`` so storage is not written on every step.
"""

from __future__ import annotations

import json
import time

from . import storage


class Progress:
    def __init__(self, uri: str | None, max_steps: int, world_size: int, every_seconds: float = 10.0):
        self.uri, self.every, self.last_write = uri, every_seconds, float("-inf")
        self.state: dict = {"step": 0, "maxSteps": max_steps, "worldSize": world_size}
        self.started_at, self.first_step = time.monotonic(), 0

    def start(self, step: int, last_checkpoint: str | None, losses: dict) -> None:
        self.started_at, self.first_step = time.monotonic(), step
        self.update(step, force=True, lastCheckpoint=last_checkpoint, **losses)

    def update(self, step: int, force: bool = False, **fields) -> None:
        """Record ``step`` (and e.g. loss, imagesPerSecond); write when due or ``force``d."""
        elapsed = time.monotonic() - self.started_at
        if step > self.first_step and elapsed > 0:
            fields["stepsPerSecond"] = (step - self.first_step) / elapsed
        self.state.update({k: v for k, v in fields.items() if v is not None}, step=step, time=time.time())
        if self.uri and (force or time.monotonic() - self.last_write >= self.every):
            storage.write_bytes(self.uri, json.dumps(self.state, sort_keys=True).encode())
            self.last_write = time.monotonic()
