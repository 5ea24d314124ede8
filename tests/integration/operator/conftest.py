"""The operator under test: a real process against the real control plane and MinIO,
authenticated as the Helm chart's ServiceAccount. Pods run on kwok nodes; the tests play
their containers (outcome, and what the trainer would write to storage)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import BUCKET
from tests.support.operator_process import OperatorProcess

STORAGE_SECRET = "dreambooth-storage"
TRAINER_IMAGE = "registry.test/dreambooth-trainer:test"


@pytest.fixture(scope="session")
def installed_operator(cluster, dreambooth_crds, minio):
    """The chart installed with helm, configured for the suite's MinIO like a platform team would.

    Cluster-wide RBAC (the chart's opt-in): each test makes a fresh tenant namespace, which a
    namespaced install would have to list up front. tests/e2e runs the default, namespaced."""
    from tests.support.chart import install_operator

    return install_operator(cluster, {
        "rbac.clusterWide": "true",
        "trainer.image.repository": TRAINER_IMAGE.split(":")[0],
        "trainer.image.tag": TRAINER_IMAGE.split(":")[1],
        "storage.endpoint": minio.endpoint,
        "storage.secure": "false",
        "storage.bucket": BUCKET,
        "storage.existingSecret": STORAGE_SECRET,
    })


@pytest.fixture(scope="session")
def operator(session_dir, installed_operator, storage):
    """The operator process with the chart's ServiceAccount and the chart's settings."""
    process = OperatorProcess(session_dir / "operator", installed_operator.kubeconfig, {
        **installed_operator.env,
        "DREAMBOOTH_PROGRESS_INTERVAL_SECONDS": "1",  # progress read each second: tests await it
        "DREAMBOOTH_POD_CREATION_TIMEOUT_SECONDS": "30",  # a Job whose pods are refused fails soon
    }).start()
    yield process
    process.stop()


@pytest.fixture
def tenant(cluster, namespace, minio):
    """A tenant namespace with the storage Secret jobs use by default."""
    secret = {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": STORAGE_SECRET},
        "stringData": {"AWS_ACCESS_KEY_ID": minio.access_key, "AWS_SECRET_ACCESS_KEY": minio.secret_key},
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(secret))
    return namespace


def small_job(repo_root: Path, name: str, **overrides) -> dict:
    """The cloody example, shrunk: 4 prior images over 2 shards, 10 steps on 2 workers."""
    job = yaml.safe_load((repo_root / "examples/cloody-job.yaml").read_text())
    job["metadata"] = {"name": name}
    spec = job["spec"]
    spec["prior"].update(numImages=4, shards=2)
    spec["training"].update(maxSteps=10, checkpointEverySteps=5)
    spec["training"]["validation"]["everySteps"] = 5
    spec["distributed"]["workers"] = 2
    spec["output"] = {"artifactName": f"{name}-lora"}
    for path, value in overrides.items():
        target = spec
        keys = path.split(".")
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        if value is None:
            target.pop(keys[-1], None)
        else:
            target[keys[-1]] = copy.deepcopy(value)
    return job
