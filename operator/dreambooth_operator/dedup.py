"""What decides an adapter, as one digest (pure): two jobs with the same digest train the same
adapter, so the second may reuse the first's ModelArtifact instead of training (output.reuse).

Every spec field counts unless it is listed here as not deciding the weights — so a field added
to the spec later counts by default, and a reuse is never wrong for want of an update here.
"""

from __future__ import annotations

import hashlib
import json

from dreambooth_api import DreamBoothJobSpec

# Where and how the job runs, not what it learns.
NOT_DECIDING = ("resources", "storage", "output", "queueName", "workloadPriorityClassName", "suspend", "backoffLimit",
                "activeDeadlineSeconds", "ttlSecondsAfterFinished")
# The photos are named by their content instead; a token reaches the same model revision.
NOT_DECIDING_NESTED = (("instance", "dataUri"), ("baseModel", "secretRef"), ("prior", "shards"))
# The most instance photo bytes the operator reads to know the digest; more: no reuse.
MAX_PHOTO_BYTES = 256 << 20


def inputs_digest(spec: DreamBoothJobSpec, photos: list[tuple[str, str]], trainer_image: str) -> str:
    """sha256 of the spec's deciding fields (defaults filled in), the (name, sha256) of every
    instance photo and the trainer image that trains it."""
    deciding = spec.model_dump(mode="json", by_alias=True)
    for name in NOT_DECIDING:
        deciding.pop(name, None)
    for section, name in NOT_DECIDING_NESTED:
        if isinstance(deciding.get(section), dict):
            deciding[section].pop(name, None)
    document = {"spec": deciding, "photos": sorted(photos), "trainer": trainer_image}
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
