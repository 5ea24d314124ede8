"""Kopf handlers: thin entry points that all lead to the Controller's one reconcile path."""

from __future__ import annotations

import kopf
from dreambooth_api import GROUP, VERSION
from dreambooth_api.names import DREAMBOOTHJOBS, JOB_NAME_LABEL

from .controller import Controller

CONTROLLER = Controller()
JOBS = (GROUP, VERSION, DREAMBOOTHJOBS)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_) -> None:
    CONTROLLER.configure(settings)
    CONTROLLER.start_resync()


@kopf.on.cleanup()
def stop(**_) -> None:
    CONTROLLER.stop_resync()


# Watch events only, no change-detecting handlers: kopf then keeps no bookkeeping in the job's
# annotations (a copy of the spec and the user's annotations there could overflow the 256 KiB
# limit) and adds no finalizer. The passes are level-based; a failed one is retried by the resync.
@kopf.on.event(*JOBS)
def on_job(event, body, **_) -> None:
    if event["type"] == "DELETED":
        CONTROLLER.forget(body)
    elif wants_pass(event["type"], body):
        CONTROLLER.reconcile(body)


@kopf.on.event("batch", "v1", "jobs", labels={JOB_NAME_LABEL: kopf.PRESENT})
def on_child_job(body, **_) -> None:
    CONTROLLER.reconcile_owner(body)


def wants_pass(event_type: str | None, body) -> bool:
    """A job seen for the first time (listing at start, or created), or whose spec changed; not
    the echo of a status patch, which would only repeat the pass that made it."""
    status = body.get("status") or {}
    return event_type in (None, "ADDED") or body["metadata"].get("generation") != status.get("observedGeneration")
