"""Integration fixtures shared by tests that need the DreamBooth API installed."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

CRDS = Path(__file__).resolve().parents[2] / "crds"
CRD_NAMES = ("dreamboothjobs.dreambooth.dev", "modelartifacts.dreambooth.dev")
BUCKET = "dreambooth"  # where jobs write, on the suite's MinIO


@pytest.fixture(scope="session")
def storage(minio, repo_root):
    """The bucket jobs write to, with the cloody photos uploaded as a user would."""
    client = minio.client()
    if not client.bucket_exists(BUCKET):
        client.make_bucket(BUCKET)
    for photo in sorted((repo_root / "examples/data/cloody-cat").glob("*.jpg")):
        data = photo.read_bytes()
        client.put_object(BUCKET, f"datasets/cloody-cat/{photo.name}", io.BytesIO(data), len(data))
    return client


def apply_crds(cluster) -> None:
    """crds/ applied to ``cluster`` and established."""
    # Server-side apply: no last-applied annotation, whose size limit large CRDs can exceed.
    applied = cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS), check=False)
    if applied.returncode != 0:
        pytest.fail(f"the apiserver refused crds/:\n{applied.stderr}")
    cluster.kubectl("wait", "--for", "condition=established", "--timeout=60s",
                    *(f"crd/{name}" for name in CRD_NAMES))


@pytest.fixture(scope="session")
def dreambooth_crds(cluster):
    """crds/ applied to the cluster and established; the names of the CRDs."""
    apply_crds(cluster)
    return CRD_NAMES
