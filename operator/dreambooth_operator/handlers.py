"""Kopf handlers: thin entry points that all lead to the one reconcile path."""

from __future__ import annotations

import kopf
from dreambooth_api.names import JOB_NAME_LABEL

from . import operator

JOBS = ("dreambooth.dev", "v1alpha1", "dreamboothjobs")
# A failed pass (API or storage hiccup) is retried soon, not after kopf's default minute.
RETRY_BACKOFF = 5


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_) -> None:
    operator.configure(settings)
    operator.RESYNC.start()


@kopf.on.cleanup()
def stop(**_) -> None:
    operator.RESYNC.stop()


@kopf.on.resume(*JOBS, backoff=RETRY_BACKOFF)
@kopf.on.create(*JOBS, backoff=RETRY_BACKOFF)
@kopf.on.update(*JOBS, field="spec", backoff=RETRY_BACKOFF)
def on_job(body, patch, **_) -> None:
    operator.reconcile(body, patch)


@kopf.on.event("batch", "v1", "jobs", labels={JOB_NAME_LABEL: kopf.PRESENT})
def on_child_job(body, **_) -> None:
    operator.reconcile_owner(body)


@kopf.on.delete(*JOBS, optional=True)
def on_delete(body, **_) -> None:
    operator.forget(body)
