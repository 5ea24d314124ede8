"""What every pod of a DreamBoothJob has, whatever its phase (pure): Pod Security `restricted`
contexts, the writable volumes a read-only root needs, and how it gets storage credentials."""

from __future__ import annotations

from dreambooth_api.keyless import ROLE_ARN_ENV, TOKEN_FILE_ENV, TOKEN_PATH
from dreambooth_api.s3 import STORAGE_KEYS

from .settings import OperatorSettings

STORAGE_TOKEN_VOLUME = "storage-token"
# Every pod passes Pod Security `restricted`. The uid is the image's own (a numeric USER, which
# the kubelet checks against runAsNonRoot), not pinned here, so platforms that assign uids can.
POD_SECURITY_CONTEXT = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY_CONTEXT = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
}
# The root filesystem is read-only, so the trainer writes only to these emptyDirs (world-writable,
# whatever the uid): name -> (mountPath, emptyDir).
HOME_DIR = "/home/trainer"
WRITABLE_VOLUMES = {
    "tmp": ("/tmp", {}),  # tempfile: checkpoint and publish staging, the launcher's exit codes
    "home": (HOME_DIR, {}),  # HOME: the base-model cache and every library's cache below it
    # NCCL and DataLoader workers use shared memory; the container default of 64 MiB is too small.
    "shm": ("/dev/shm", {"medium": "Memory"}),
}
# Set here, not left to the image, so nothing lands on the read-only root: the trainer's model
# cache, torch, triton, CUDA and matplotlib write under HOME or XDG_CACHE_HOME, torch.compile
# and tempfile under TMPDIR.
WRITABLE_ENV = {
    "HOME": HOME_DIR,
    "TMPDIR": "/tmp",
    "XDG_CACHE_HOME": f"{HOME_DIR}/.cache",
    "HF_HOME": f"{HOME_DIR}/.cache/huggingface",
}


def credentials_env(settings: OperatorSettings, secret: str) -> list[dict]:
    """How a pod gets storage credentials: a projected token (keyless) or a Secret's keys."""
    if settings.keyless:  # the projected token, exchanged at STS by the trainer
        return [{"name": TOKEN_FILE_ENV, "value": TOKEN_PATH},
                *([{"name": ROLE_ARN_ENV, "value": settings.storage_role_arn}] if settings.storage_role_arn else [])]
    # Static keys only ever travel as Secret references.
    return [{"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
            for key in STORAGE_KEYS]


def storage_token_volume(audience: str, expiration_seconds: int) -> dict:
    """A token for the storage audience alone: useless to the API server, renewed by the kubelet."""
    return {"name": STORAGE_TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": {
        "audience": audience, "expirationSeconds": expiration_seconds, "path": TOKEN_PATH.rsplit("/", 1)[1]}}]}}
