"""How far a local run's phases are, from the files the trainer writes.

Priors: the class images finished in the prior cache's folder (image and entry,
``priorcache.cached_indices``). Training:
``progress.json``, parsed with ``files.Progress``. Both are polled; the trainer's log lines are
for people, not for this.
"""

from __future__ import annotations

import os
from pathlib import Path

from dreambooth_api.files import FileError, Progress
from dreambooth_api.priorcache import cached_indices


def priors_ready(folder: Path, total: int) -> int:
    """How many of the ``total`` class images are stored (each with its entry, written after it)."""
    try:
        present = os.listdir(folder)
    except OSError:
        return 0
    return len(cached_indices(present, total))


def read_progress(path: Path) -> Progress | None:
    """``progress.json``, or None while it is absent or half-written."""
    try:
        return Progress.loads(path.read_bytes())
    except (OSError, FileError):
        return None


def training_detail(progress: Progress) -> str:
    parts = []
    if progress.loss is not None and progress.step > 0:
        parts.append(f"loss {progress.loss:.4f}")
    if progress.images_per_second:
        parts.append(f"{progress.images_per_second:.1f} img/s")
    elif progress.steps_per_second:
        parts.append(f"{progress.steps_per_second:.2f} step/s")
    return ", ".join(parts)


def show_training(bar, path: Path) -> Progress | None:
    """Move ``bar`` (see ``bars``) to the step of ``progress.json``, with its loss and speed."""
    progress = read_progress(path)
    if progress is not None and progress.step >= bar.n:
        bar.update_to(progress.step, progress.max_steps, training_detail(progress))
    return progress
