"""Condition types of a DreamBoothJob and the one way to change them.

``lastTransitionTime`` moves only when a condition's status flips (jobset ``updateCondition``),
so an unchanged observation produces an unchanged status and no patch.
"""

from __future__ import annotations

import datetime

VALIDATED = "Validated"  # secrets, bucket and data are usable
PRIORS_READY = "PriorsReady"
TRAINED = "Trained"
PUBLISHED = "Published"
SUSPENDED = "Suspended"
COMPLETE = "Complete"
FAILED = "Failed"
# Set once a problem was seen: the files in the tenant's storage parse and fit their caps.
FILES_VALID = "FilesValid"
# Set once a problem was seen: the current child Job could create its pods.
PODS_CREATED = "PodsCreated"
# Set once the job uses a queue: its current child Job waits for the queue to admit it.
QUEUED = "Queued"

# Of a ModelArtifact: its adapter's sha256 was checked in storage; Ready: usable.
VERIFIED = "Verified"
READY = "Ready"

ORDER = (VALIDATED, QUEUED, PODS_CREATED, FILES_VALID, PRIORS_READY, TRAINED, PUBLISHED, SUSPENDED, COMPLETE, FAILED,
         VERIFIED, READY)
# A False one of these is a Warning Event when it flips.
WARN_WHEN_FALSE = (VALIDATED, PODS_CREATED, FILES_VALID, FAILED)


def timestamp(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def find(conditions: list[dict] | None, type_: str) -> dict | None:
    return next((c for c in conditions or [] if c["type"] == type_), None)


def is_true(conditions: list[dict] | None, type_: str) -> bool:
    found = find(conditions, type_)
    return bool(found and found["status"] == "True")


def set_condition(
    conditions: list[dict] | None,
    type_: str,
    status: bool,
    reason: str,
    message: str,
    now: str,
    generation: int | None = None,
) -> list[dict]:
    """A new list with `type_` set; other conditions untouched, order stable."""
    new_status = "True" if status else "False"
    previous = find(conditions, type_)
    updated = {
        "type": type_,
        "status": new_status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": previous["lastTransitionTime"]
        if previous and previous["status"] == new_status
        else now,
    }
    if generation is not None:
        updated["observedGeneration"] = generation
    others = [c for c in conditions or [] if c["type"] != type_]
    merged = others + [updated]
    return sorted(merged, key=lambda c: ORDER.index(c["type"]) if c["type"] in ORDER else len(ORDER))
