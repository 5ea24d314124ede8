"""Kopf handlers: thin entry points that all lead to the Controller's one reconcile path."""

from __future__ import annotations

import kopf
from dreambooth_api import GROUP, VERSION
from dreambooth_api.names import DREAMBOOTHJOBS, JOB_NAME_LABEL

from .controller import Controller

CONTROLLER = Controller()
JOBS = (GROUP, VERSION, DREAMBOOTHJOBS)
# A failed pass (API or storage hiccup) is retried soon, not after kopf's default minute.
RETRY_BACKOFF = 5


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_) -> None:
    CONTROLLER.configure(settings)
    CONTROLLER.start_resync()


@kopf.on.cleanup()
def stop(**_) -> None:
    CONTROLLER.stop_resync()


@kopf.on.resume(*JOBS, backoff=RETRY_BACKOFF)
@kopf.on.create(*JOBS, backoff=RETRY_BACKOFF)
@kopf.on.update(*JOBS, field="spec", backoff=RETRY_BACKOFF)
def on_job(body, **_) -> None:
    CONTROLLER.reconcile(body)


@kopf.on.event("batch", "v1", "jobs", labels={JOB_NAME_LABEL: kopf.PRESENT})
def on_child_job(body, **_) -> None:
    CONTROLLER.reconcile_owner(body)


@kopf.on.delete(*JOBS, optional=True)
def on_delete(body, **_) -> None:
    CONTROLLER.forget(body)
