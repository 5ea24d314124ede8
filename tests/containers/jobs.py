"""The cloody job as a user applies it (`kubectl apply -k`), shrunk for the real node."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from tests.support.datasets import CLOODY_PREFIX, REPO_ROOT, TINY_MODEL_PREFIX

OVERLAYS = (REPO_ROOT / "tests/e2e/cloody-tiny-patch.yaml", Path(__file__).with_name("cloody-node-patch.yaml"))


def apply_cloody(platform, workdir: Path, name: str = "cloody", spec: dict | None = None) -> None:
    """examples/cloody-job.yaml with the overlays, the tenant's own data and model (keyless: its
    credentials reach nothing else), and ``spec`` merged last, as job ``name``."""
    cluster, namespace, root = platform.cluster, platform.tenant, platform.storage_root
    own = {"baseModel": {"uri": f"{root}/{TINY_MODEL_PREFIX}"}, "instance": {"dataUri": f"{root}/{CLOODY_PREFIX}/"}}
    spec = {**own, **(spec or {})}
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "examples/cloody-job.yaml", workdir / "cloody-job.yaml")
    patches = []
    for index, overlay in enumerate(OVERLAYS):
        shutil.copy(overlay, workdir / f"patch-{index}.yaml")
        patches.append(f"patch-{index}.yaml")
    if spec:
        extra = {"apiVersion": "dreambooth.dev/v1alpha1", "kind": "DreamBoothJob",
                 "metadata": {"name": "cloody"}, "spec": spec}
        (workdir / "patch-extra.yaml").write_text(yaml.safe_dump(extra))
        patches.append("patch-extra.yaml")
    (workdir / "kustomization.yaml").write_text(yaml.safe_dump({
        "namespace": namespace, "resources": ["cloody-job.yaml"], "patches": [{"path": p} for p in patches],
        **({"nameSuffix": name.removeprefix("cloody")} if name != "cloody" else {}),
    }))
    cluster.kubectl("apply", "-k", str(workdir))


def status(cluster, namespace: str, name: str = "cloody") -> dict:
    out = cluster.kubectl("get", "dbj", name, "-n", namespace, "-o", "json", check=False)
    return (json.loads(out.stdout).get("status") or {}) if out.returncode == 0 else {}


def pods(cluster, namespace: str, name: str, component: str | None = None) -> list[dict]:
    selector = f"dreambooth.dev/job-name={name}" + (f",dreambooth.dev/component={component}" if component else "")
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json")
    return json.loads(out.stdout)["items"]
