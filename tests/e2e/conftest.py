"""The e2e platform, shared by the package's modules: storage with data and model, the chart
installed with its default (namespaced) RBAC for one tenant namespace, a GPU node whose pods
really run, and the operator running as the chart's ServiceAccount.

Package-scoped: test_least_privilege.py compares the operator's RBAC with every call it made
while the modules before it ran, so all of them share one operator and one ServiceAccount."""

from __future__ import annotations

import json
import sys
import uuid
from dataclasses import dataclass, field

import pytest

from tests.support.chart import InstalledOperator, install_operator
from tests.support.datasets import upload_cloody_and_tiny_model
from tests.support.node_agent import NodeAgent
from tests.support.operator_process import OperatorProcess

TRAINER_IMAGE = "registry.test/dreambooth-trainer"
BUCKET = "dreambooth"
STORAGE_SECRET = "dreambooth-storage"
# A release of its own: the integration suite installs the chart cluster-wide as `dreambooth`.
RELEASE = NAMESPACE = "dreambooth-e2e"


@dataclass
class Platform:
    installed: InstalledOperator
    operator: OperatorProcess
    agent: NodeAgent
    tenant: str  # the one namespace the operator watches
    exercised: set[str] = field(default_factory=set)  # tests that drove the operator to the end


@pytest.fixture(scope="package")
def platform(cluster, minio, session_dir, repo_root):
    """What a platform team sets up, then what a tenant admin adds: the storage Secret."""
    upload_cloody_and_tiny_model(minio.client(), BUCKET, session_dir)
    tenant = f"e2e-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", tenant)  # before the install: its Role goes in it
    # The tenant enforces Pod Security `restricted`, as a multi-tenant platform would.
    cluster.kubectl("label", "namespace", tenant, "pod-security.kubernetes.io/enforce=restricted",
                    "pod-security.kubernetes.io/enforce-version=latest")
    installed = install_operator(cluster, {
        "trainer.image.repository": TRAINER_IMAGE, "trainer.image.tag": "e2e",
        "storage.endpoint": minio.endpoint, "storage.secure": "false", "storage.bucket": BUCKET,
        "storage.existingSecret": STORAGE_SECRET,
    }, watch=[tenant], release=RELEASE, namespace=NAMESPACE)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": STORAGE_SECRET},
              "stringData": {"AWS_ACCESS_KEY_ID": minio.access_key, "AWS_SECRET_ACCESS_KEY": minio.secret_key}}
    cluster.kubectl("apply", "-n", tenant, "-f", "-", input=json.dumps(secret))
    cluster.kubectl("wait", "--for=condition=established", "crd/dreamboothjobs.dreambooth.dev")
    agent = NodeAgent(cluster, name="gpu-agent-0", gpus=8, workdir=session_dir / "gpu-agent-0",
                      images={TRAINER_IMAGE: [sys.executable, "-m", "dreambooth_trainer"]}).start()
    operator = OperatorProcess(session_dir / "e2e-operator", installed.kubeconfig,
                               {**installed.env, "DREAMBOOTH_PROGRESS_INTERVAL_SECONDS": "2"}).start()
    yield Platform(installed, operator, agent, tenant)
    operator.stop()
    agent.stop()
    cluster.kubectl("delete", "namespace", tenant, "--wait=false", check=False)
