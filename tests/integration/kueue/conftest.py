"""The real Kueue, on a control plane of its own.

Isolation, not the session's shared ``cluster``: Kueue registers webhooks with failurePolicy
Fail for every Job and Pod (and Deployment, StatefulSet) of the cluster, and it admits — that is
unsuspends — every Job labelled ``kueue.x-k8s.io/queue-name``. Tests elsewhere rely on such
Jobs staying suspended with no Kueue, and any of them may run while or after these do, in any
order. Teardown could remove the webhooks and CRDs, but not undo admissions Kueue already made,
and a crashed Kueue would block the shared cluster until then. A second control plane costs a
few seconds once the binaries are cached, so Kueue gets its own and nothing is shared.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest

from tests.integration.conftest import BUCKET, apply_crds
from tests.support.controlplane import ControlPlane
from tests.support.kueue import Kueue, tenant_queues, workload_priority_class
from tests.support.operator_process import OperatorProcess

STORAGE_SECRET = "dreambooth-storage"
# Kueue's priorities of the tests' DreamBoothJobs (spec.workloadPriorityClassName).
PRIORITIES = {"batch": 100, "urgent": 1000}


@pytest.fixture(scope="session")
def kueue_cluster(session_dir) -> ControlPlane:
    plane = ControlPlane(session_dir / "kueue-kube").start()
    yield plane
    plane.stop()


@pytest.fixture(scope="session")
def kueue(kueue_cluster, session_dir) -> Kueue:
    """Kueue running against ``kueue_cluster``; its log is <session_dir>/kueue/kueue.log."""
    manager = Kueue(kueue_cluster, session_dir / "kueue").start()
    yield manager
    manager.stop()


@pytest.fixture
def tenants(kueue, kueue_cluster) -> Callable[..., list[str]]:
    """``tenants(2, 4, borrowing_limit=None)``: fresh namespaces with those GPU quotas, each with
    its ClusterQueue and a LocalQueue "gpu", all in a cohort of this test's own (so tests never
    borrow from each other); the namespace names, in order."""
    made: list[str] = []

    def make(*quotas: int, borrowing_limit: int | None = None) -> list[str]:
        run = uuid.uuid4().hex[:8]
        names = [f"tenant-{chr(ord('a') + i)}-{run}" for i in range(len(quotas))]
        for name in names:
            kueue_cluster.kubectl("create", "namespace", name)
            made.append(name)
        kueue.apply(tenant_queues(dict(zip(names, quotas, strict=True)), f"cohort-{run}", borrowing_limit))
        return names

    yield make
    for name in made:
        kueue_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def kueue_operator(kueue_cluster, kueue, minio, storage, session_dir) -> OperatorProcess:
    """The operator on Kueue's cluster, installed by the chart as a platform running Kueue would
    (operator.kueue: it watches Kueue's Workloads), with the suite's MinIO."""
    from tests.support.chart import install_operator

    apply_crds(kueue_cluster)
    kueue.apply([workload_priority_class(name, value) for name, value in PRIORITIES.items()])
    installed = install_operator(kueue_cluster, {
        "rbac.clusterWide": "true", "operator.kueue": "true",
        "trainer.image.repository": "registry.test/dreambooth-trainer", "trainer.image.tag": "test",
        "storage.endpoint": minio.endpoint, "storage.secure": "false", "storage.bucket": BUCKET,
        "storage.existingSecret": STORAGE_SECRET,
    })
    process = OperatorProcess(session_dir / "kueue-operator", installed.kubeconfig, {
        **installed.env, "DREAMBOOTH_PROGRESS_INTERVAL_SECONDS": "1"}).start()
    process.installed = installed
    yield process
    process.stop()


@pytest.fixture
def storage_tenants(tenants, kueue_cluster, minio) -> Callable[..., list[str]]:
    """``tenants`` whose namespaces also hold the storage Secret jobs use by default."""

    def make(*quotas: int, borrowing_limit: int | None = None) -> list[str]:
        names = tenants(*quotas, borrowing_limit=borrowing_limit)
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": STORAGE_SECRET},
                  "stringData": {"AWS_ACCESS_KEY_ID": minio.access_key, "AWS_SECRET_ACCESS_KEY": minio.secret_key}}
        for name in names:  # on stdin: a key never on a command line
            kueue_cluster.kubectl("apply", "-n", name, "-f", "-", input=json.dumps(secret))
        return names

    return make

