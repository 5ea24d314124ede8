"""Training progress for the operator's status: ``progress.json`` (``files.Progress``) at ``progressUri``.

Written by rank 0 when a run starts or resumes, after each checkpoint, at the end, and in
between at most every ``every_seconds`` so storage is not written on every step.
"""

from __future__ import annotations

import time

from dreambooth_api.files import Progress as ProgressFile

from . import storage


class Progress:
    def __init__(self, uri: str | None, max_steps: int, world_size: int, every_seconds: float = 10.0):
        self.uri, self.every, self.last_write = uri, every_seconds, float("-inf")
        self.state = ProgressFile(step=0, max_steps=max_steps, world_size=world_size, time=time.time())
        self.started_at, self.first_step = time.monotonic(), 0

    def start(self, step: int, last_checkpoint: str | None, losses: dict) -> None:
        self.started_at, self.first_step = time.monotonic(), step
        self.update(step, force=True, last_checkpoint=last_checkpoint, **losses)

    def update(self, step: int, force: bool = False, **fields) -> None:
        """Record ``step`` (and e.g. loss, images_per_second); write when due or ``force``d."""
        elapsed = time.monotonic() - self.started_at
        if step > self.first_step and elapsed > 0:
            fields["steps_per_second"] = (step - self.first_step) / elapsed
        fields = {k: v for k, v in fields.items() if v is not None}
        data = self.state.model_dump(exclude_none=True) | fields | {"step": step, "time": time.time()}
        self.state = ProgressFile.model_validate(data)
        if self.uri and (force or time.monotonic() - self.last_write >= self.every):
            storage.write_bytes(self.uri, self.state.dumps())
            self.last_write = time.monotonic()
