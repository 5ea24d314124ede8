"""When a job's files in storage are read: only when they can have changed."""

from __future__ import annotations

import math

from dreambooth_operator.observation import ChildJob
from dreambooth_operator.reads import NO_PRIOR_JOB, StorageMemo, next_progress_read, priors_due, progress_due

RUNNING = ChildJob(name="cloody-train-0", pods=2)


def test_priors_are_counted_once_then_only_when_the_prior_job_changes():
    memo = StorageMemo("uid-1")
    assert priors_due(memo, 8, None, None)  # never counted: whatever is stored may be skipped
    memo.priors_ready, memo.priors_version = 3, NO_PRIOR_JOB
    assert not priors_due(memo, 8, None, None)
    job = ChildJob(name="cloody-priors", pods=2)
    assert priors_due(memo, 8, job, "41")  # the Job appeared
    memo.priors_version = "41"
    assert not priors_due(memo, 8, job, "41")  # nothing changed: no request
    assert priors_due(memo, 8, job, "57")  # a shard finished


def test_complete_priors_are_never_counted_again():
    memo = StorageMemo("uid-1", priors_ready=8, priors_version="41")
    assert not priors_due(memo, 8, ChildJob(name="cloody-priors"), "99")


def test_progress_is_read_only_while_training_runs_and_once_per_interval():
    memo = StorageMemo("uid-1")
    assert not progress_due(memo, None, 100.0, 10)
    assert not progress_due(memo, ChildJob(name="t", finished="Complete"), 100.0, 10)
    assert not progress_due(memo, ChildJob(name="t", suspended=True), 100.0, 10)
    assert progress_due(memo, RUNNING, 100.0, 10)
    memo.progress_read_at = 100.0
    assert not progress_due(memo, RUNNING, 109.9, 10)
    assert progress_due(memo, RUNNING, 110.0, 10)
    assert math.isclose(next_progress_read(memo, 104.0, 10), 6.0)
    assert next_progress_read(memo, 130.0, 10) == 0.0
