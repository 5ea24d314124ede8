"""The per-job lock map holds only live jobs: a deleted job's lock goes with it."""

from __future__ import annotations

from dreambooth_operator.controller import Controller, JobLocks

from .wrappers import SETTINGS


def test_a_deleted_jobs_lock_is_dropped():
    locks = JobLocks()
    assert locks(("team-a", "cloody")) is locks(("team-a", "cloody"))
    locks(("team-a", "other"))
    locks.forget(("team-a", "cloody"))
    assert len(locks) == 1


def test_a_lock_held_by_a_running_pass_is_kept():
    locks = JobLocks()
    with locks(("team-a", "cloody")):
        locks.forget(("team-a", "cloody"))
        assert len(locks) == 1


def test_controller_forgets_the_job_and_its_backoff():
    controller = Controller(SETTINGS, kube=object())
    key = ("team-a", "cloody")
    controller.locks(key)
    controller.not_before[key] = None
    controller.forget({"metadata": {"namespace": "team-a", "name": "cloody"}})
    assert len(controller.locks) == 0 and key not in controller.not_before
