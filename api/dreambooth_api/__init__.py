"""The DreamBooth API (group dreambooth.dev, version v1alpha1) as pydantic models.

These models are the single source of truth: ``crdgen`` renders crds/ from them and the
operator parses specs with them (``DreamBoothJobSpec.model_validate(body["spec"])``).
"""

from .base import API_VERSION, GROUP, VERSION, Condition, Kind, SecretRef
from .dreamboothjob import (
    DREAMBOOTH_JOB,
    DreamBoothJob,
    DreamBoothJobSpec,
    DreamBoothJobStatus,
    JobPhase,
)
from .modelartifact import (
    MODEL_ARTIFACT,
    ArtifactPhase,
    ModelArtifact,
    ModelArtifactSpec,
    ModelArtifactStatus,
)

KINDS = (DREAMBOOTH_JOB, MODEL_ARTIFACT)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "VERSION",
    "ArtifactPhase",
    "Condition",
    "DREAMBOOTH_JOB",
    "DreamBoothJob",
    "DreamBoothJobSpec",
    "DreamBoothJobStatus",
    "JobPhase",
    "Kind",
    "MODEL_ARTIFACT",
    "ModelArtifact",
    "ModelArtifactSpec",
    "ModelArtifactStatus",
    "SecretRef",
]
