"""Session fixtures: the real parts the suite runs against, each started on first use.

Unit tests start nothing. Every process a fixture starts is stopped when the session ends
(also after a failing test, and by the kernel if pytest itself is killed), and all state
lives in one temporary directory removed at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from dreambooth_api import keyless

from tests.support import binaries
from tests.support.controlplane import ControlPlane
from tests.support.minio_server import MinioServer, OpenIDProvider
from tests.support.prometheus_server import PrometheusServer
from tests.support.sts import KEYLESS_BUCKET, OPERATOR_SUBJECT

REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(str(item.fspath))
        for kind in ("integration", "e2e", "chart", "containers"):
            if f"tests/{kind}/" in path.as_posix():
                item.add_marker(getattr(pytest.mark, kind))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def session_dir():
    path = Path(tempfile.mkdtemp(prefix="dreambooth-test-"))
    yield path
    if os.environ.get("DREAMBOOTH_KEEP_TEST_STATE"):
        print(f"\ntest state kept in {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster(session_dir):
    """etcd + kube-apiserver + controller-manager + scheduler + kwok with 4 GPU nodes."""
    plane = ControlPlane(session_dir / "kube").start()
    yield plane
    plane.stop()


@pytest.fixture(scope="session")
def minio(session_dir):
    server = MinioServer(session_dir / "minio").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sts_minio(session_dir, cluster):
    """A MinIO without any key but root's in use: its STS exchanges the cluster's ServiceAccount
    tokens (audience keyless.DEFAULT_AUDIENCE) for credentials under keyless.role_policy, for the
    bucket KEYLESS_BUCKET; every request is audited (audit_log)."""
    openid = OpenIDProvider(cluster.openid_config_url, cluster.ca.cert_path)
    server = MinioServer(session_dir / "sts-minio", openid=openid, audit=True).start()
    try:
        server.add_policy(openid.role_policy_name, keyless.role_policy(KEYLESS_BUCKET, OPERATOR_SUBJECT))
        server.client().make_bucket(KEYLESS_BUCKET)
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture(scope="session")
def prometheus(session_dir):
    server = PrometheusServer(session_dir / "prometheus").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def helm() -> Path:
    return binaries.ensure(["helm"])["helm"]


@pytest.fixture
def namespace(cluster):
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
