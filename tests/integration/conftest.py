"""Integration fixtures shared by tests that need the DreamBooth API installed."""

from __future__ import annotations

from pathlib import Path

import pytest

CRDS = Path(__file__).resolve().parents[2] / "crds"
CRD_NAMES = ("dreamboothjobs.dreambooth.dev", "modelartifacts.dreambooth.dev")


@pytest.fixture(scope="session")
def dreambooth_crds(cluster):
    """crds/ applied to the cluster and established; the names of the CRDs."""
    # Server-side apply: no last-applied annotation, whose size limit large CRDs can exceed.
    applied = cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS), check=False)
    if applied.returncode != 0:
        pytest.fail(f"the apiserver refused crds/:\n{applied.stderr}")
    cluster.kubectl("wait", "--for", "condition=established", "--timeout=60s",
                    *(f"crd/{name}" for name in CRD_NAMES))
    return CRD_NAMES
