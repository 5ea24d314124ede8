"""Kopf handlers: thin entry points that all lead to the one reconcile path."""

from __future__ import annotations

import kopf

from . import operator
from .naming import JOB_NAME_LABEL

JOBS = ("dreambooth.dev", "v1alpha1", "dreamboothjobs")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_) -> None:
    operator.configure(settings)


@kopf.on.resume(*JOBS)
@kopf.on.create(*JOBS)
@kopf.on.update(*JOBS, field="spec")
def on_job(body, patch, **_) -> None:
    operator.reconcile(body, patch)


@kopf.timer(*JOBS, interval=operator.reconcile_interval(), initial_delay=1)
def on_timer(body, patch, **_) -> None:
    operator.reconcile(body, patch, timer=True)


@kopf.on.event("batch", "v1", "jobs", labels={JOB_NAME_LABEL: kopf.PRESENT})
def on_child_job(body, **_) -> None:
    operator.reconcile_owner(body)


@kopf.on.delete(*JOBS, optional=True)
def on_delete(body, **_) -> None:
    operator.forget(body)
