"""A deleted job leaves nothing behind in the Controller: no queued pass, no backoff, no memo."""

from __future__ import annotations

import datetime

from dreambooth_operator.controller import Controller
from dreambooth_operator.reads import StorageMemo

from .wrappers import SETTINGS


def test_controller_forgets_the_job_its_backoff_and_what_it_read():
    controller = Controller(SETTINGS, kube=object())
    key, other = ("team-a", "cloody"), ("team-b", "other")
    controller.queue.add(key)
    controller.queue.add(other)
    controller.queue.add_after(key, 60)
    controller.not_before[key] = (datetime.datetime.now(datetime.UTC), 1)
    controller.waits[key] = controller.refusals[key] = 3
    controller.memos[key] = StorageMemo("uid-1", priors_ready=4)
    controller.forget(key)
    assert len(controller.queue) == 1 and controller.queue.waiting() == 0
    assert controller.queue.get(timeout=0) == other
    assert all(key not in kept for kept in (controller.not_before, controller.waits, controller.refusals,
                                            controller.memos))


def test_a_new_job_of_the_same_name_reads_storage_afresh():
    controller = Controller(SETTINGS, kube=object())
    key = ("team-a", "cloody")
    first = controller._memo(key, "uid-1")
    first.priors_ready = 8
    assert controller._memo(key, "uid-1") is first
    assert controller._memo(key, "uid-2").priors_ready is None
