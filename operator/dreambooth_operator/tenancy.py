"""Where a job may keep and read data (pure): with keyless storage, only below its namespace's own
prefix, which is all its credentials reach. A URI outside it is refused before anything is read,
with a reason naming the field, instead of failing later in a pod with AccessDenied."""

from __future__ import annotations

from dreambooth_api import DreamBoothJobSpec
from dreambooth_api.keyless import is_within
from dreambooth_api.names import StorageLayout
from dreambooth_api.s3 import split_s3

from .observation import Problem


def keyless_problems(spec: DreamBoothJobSpec, layout: StorageLayout, tenant_root: str) -> list[Problem]:
    """What in ``spec`` points outside ``s3://<layout.bucket>/<tenant_root>/``."""
    root = f"s3://{layout.bucket}/{tenant_root}/"
    storage = spec.storage
    problems = []
    if storage and storage.secret_ref:
        problems.append(Problem("StorageSecretNotAllowed", f"storage.secretRef {storage.secret_ref.name!r}: this "
                                f"operator uses keyless storage (ServiceAccount tokens) in {root}; remove the key"))
    if storage and storage.prefix and not is_within(f"{tenant_root}/{storage.prefix}", tenant_root):
        # The schema admits "." and ".." segments; a folder of the namespace's prefix has none.
        problems.append(Problem("StorageOutsideTenant", f"storage.prefix {storage.prefix!r} climbs out of this "
                                f"namespace's storage {root}"))
    if storage and storage.bucket and storage.bucket != layout.bucket:
        problems.append(Problem("StorageOutsideTenant", f"storage.bucket {storage.bucket!r}: this namespace's "
                                f"storage is {root}"))
    for field, uri, reason in (("instance.dataUri", spec.instance.data_uri, "InstanceDataOutsideTenant"),
                               ("baseModel.uri", spec.base_model.uri, "BaseModelOutsideTenant")):
        if uri.startswith("s3://") and not _inside(uri, layout.bucket, tenant_root):
            problems.append(Problem(reason, f"{field} {uri} is outside this namespace's storage {root}: "
                                    "its credentials reach nothing else"))
    return problems


def _inside(uri: str, bucket: str, root: str) -> bool:
    uri_bucket, key = split_s3(uri)
    return uri_bucket == bucket and is_within(key, root) and key.rstrip("/") != root
