"""When a job's files in storage are worth reading (pure): each read is tied to what can have
changed it, so a job that waits costs no storage request.

- Class images are counted when the prior Job changed (a shard finished, the Job completed or
  is not there yet), never on a timer: only that Job's pods write them.
- The trainer's progress is read only while a training Job runs, at most once per progress
  interval, and fetched only when it is newer than the copy kept (a conditional GET).
- A finished job is never read again (the Controller does not gather for it at all).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dreambooth_api.files import Progress

from .observation import ChildJob, Problem

NO_PRIOR_JOB = ""  # the version a count made while no prior Job existed belongs to


@dataclass
class StorageMemo:
    """What earlier passes of one job read from storage, and when."""

    uid: str
    priors_ready: int | None = None  # None: never counted
    priors_version: str | None = None  # the prior Job's resourceVersion when last counted
    progress: Progress | None = None
    progress_problem: Problem | None = None  # the kept copy did not parse
    progress_etag: str = ""
    progress_read_at: float = -math.inf  # monotonic seconds
    digest_tried: bool = False  # the instance photos were read for the inputs digest
    priors_verified: dict[int, str] = field(default_factory=dict)  # class image index → etag hashed
    prior_problems: tuple[Problem, ...] = ()  # cached class images that are not what their entry says


def priors_due(memo: StorageMemo, total: int, prior_job: ChildJob | None, version: str | None) -> bool:
    """Count the class images again: never counted, or the prior Job changed since, and not all
    there yet (stored images are never removed by a pass)."""
    if memo.priors_ready is not None and memo.priors_ready >= total:
        return False
    seen = version if prior_job is not None else NO_PRIOR_JOB
    return memo.priors_ready is None or memo.priors_version != seen


def trains(train_job: ChildJob | None) -> bool:
    """The training Job runs: only then can the trainer's progress change."""
    return train_job is not None and train_job.finished is None and not train_job.suspended


def progress_due(memo: StorageMemo, train_job: ChildJob | None, now: float, interval: float) -> bool:
    """A training Job runs and the last read is at least one progress interval old."""
    return trains(train_job) and now - memo.progress_read_at >= interval


def next_progress_read(memo: StorageMemo, now: float, interval: float) -> float:
    """Seconds until the progress may be read again."""
    return max(0.0, memo.progress_read_at + interval - now)
