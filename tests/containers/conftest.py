"""The container tier: what a platform team gets from `helm install` on a GPU cluster, here.

A control plane of its own (listening on the node's address, so pods reach it), one real node
(kubelet, containerd, runc, CNI bridge, kube-proxy, CoreDNS, fake-GPU device plugin), MinIO on
the node's address, a Prometheus, the chart installed with the images `make images` built, the
operator running in-cluster in a namespace that enforces Pod Security `restricted`, and a
tenant namespace that enforces it too. Prometheus finds the pods as a PodMonitor would
(tests/support/pod_discovery.py) and scrapes them on their pod IPs. Package-scoped: starting
it costs about a minute once the images are in containerd.

Storage is keyless, as a platform would run it: MinIO trusts the control plane as the OpenID
issuer of ServiceAccount tokens, the kubelet projects the pods' and the operator's storage
tokens, and no key exists in the tenant namespace (the chart onboards it).
"""

from __future__ import annotations

import json
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dreambooth_api.keyless import role_policy, service_account_subject, tenant_prefix
from dreambooth_operator.podspec import STORAGE_TOKEN_VOLUME

from tests.support.chart import NAMESPACE, install_operator
from tests.support.controlplane import ControlPlane
from tests.support.datasets import upload_cloody_and_tiny_model
from tests.support.images import OPERATOR_IMAGE, TRAINER_IMAGE, require_built
from tests.support.minio_server import MinioServer, OpenIDProvider
from tests.support.node import NODE_NAME, RealNode
from tests.support.node_host import NODE_ADDRESS, NodeHost
from tests.support.pod_discovery import PodDiscovery
from tests.support.prometheus_server import PrometheusServer
from tests.support.wait import wait_for

BUCKET = "dreambooth"
OPERATOR_ACCOUNT = "dreambooth-operator"
# The least the apiserver issues: credentials taken from a pod die within the tier's run.
TOKEN_SECONDS = 600
RESTRICTED = ("pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/enforce-version=latest")


@dataclass
class NodePlatform:
    cluster: ControlPlane
    node: RealNode
    minio: MinioServer
    prometheus: PrometheusServer
    tenant: str
    operator_namespace: str = NAMESPACE
    # Storage credentials a test took from a running pod, for a later test to see expire.
    taken: list = field(default_factory=list)

    @property
    def storage_root(self) -> str:
        """The tenant's own prefix: all its pods' credentials reach."""
        return f"s3://{BUCKET}/{tenant_prefix(self.tenant)}"

    def pod_token(self, pod: dict) -> str | None:
        """The storage token the kubelet projected into a running pod, read from the node."""
        path = (Path(self.node.workdir) / "kubelet" / "pods" / pod["metadata"]["uid"] / "volumes"
                / "kubernetes.io~projected" / STORAGE_TOKEN_VOLUME / "token")
        try:
            return path.read_text().strip() or None
        except OSError:
            return None

    def operator_pod(self) -> dict:
        pods = json.loads(self.cluster.kubectl("get", "pods", "-n", self.operator_namespace, "-l",
                                               "app.kubernetes.io/name=dreambooth-operator", "-o", "json").stdout)
        (pod,) = pods["items"]
        return pod


def pod_ready(pod: dict) -> bool:
    conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return conditions.get("Ready") == "True"


@pytest.fixture(scope="package")
def node_platform(session_dir):
    require_built(OPERATOR_IMAGE, TRAINER_IMAGE)
    workdir = session_dir / "containers"
    with ExitStack() as stack:
        host = NodeHost().create()  # first: the control plane listens on the node's address
        stack.callback(host.remove)
        cluster = ControlPlane(workdir / "kube", gpu_nodes=0, address=NODE_ADDRESS).start()
        stack.callback(cluster.stop)
        node = RealNode(cluster, host, workdir / "node", images=[OPERATOR_IMAGE, TRAINER_IMAGE]).start()
        stack.callback(node.stop)  # before the control plane: the kubelet stops the pods
        openid = OpenIDProvider(cluster.openid_config_url, cluster.ca.cert_path)
        minio = MinioServer(workdir / "minio", address=NODE_ADDRESS, openid=openid).start()
        stack.callback(minio.stop)
        minio.add_policy(openid.role_policy_name,
                         role_policy(BUCKET, service_account_subject(NAMESPACE, OPERATOR_ACCOUNT)))
        prometheus = PrometheusServer(workdir / "prometheus").start()
        stack.callback(prometheus.stop)
        discovery = PodDiscovery(stack.enter_context(cluster.api_client()), prometheus).start()
        stack.callback(discovery.stop)
        tenant = f"tenant-{uuid.uuid4().hex[:8]}"
        # What the tenant put in its own prefix before its first job (MinIO's root writes it here).
        upload_cloody_and_tiny_model(minio.client(), BUCKET, session_dir, prefix=tenant_prefix(tenant))
        for namespace in (tenant, NAMESPACE):  # both before the install: its Role goes in the tenant's
            cluster.kubectl("create", "namespace", namespace)
            cluster.kubectl("label", "namespace", namespace, *RESTRICTED)
        # The chart's defaults name the images `make images` built; only the site's settings are
        # given. Keyless storage: the chart onboards the tenant (its workload ServiceAccount).
        install_operator(cluster, {
            "storage.endpoint": minio.endpoint, "storage.secure": "false", "storage.bucket": BUCKET,
            "storage.mode": "keyless", "storage.keyless.roleArn": minio.role_arn,
            "storage.keyless.tokenExpirationSeconds": str(TOKEN_SECONDS),
            "storage.keyless.tenants": "{" + tenant + "}", "serviceAccount.name": OPERATOR_ACCOUNT,
            "operator.progressIntervalSeconds": "2",
        }, watch=[tenant])
        platform = NodePlatform(cluster, node, minio, prometheus, tenant)
        wait_for(lambda: pod_ready(platform.operator_pod()), 300, lambda: (
            f"the operator's pod Ready on {NODE_NAME}: {platform.operator_pod().get('status')}\n"
            + cluster.kubectl("describe", "pods", "-n", NAMESPACE, check=False).stdout[-3000:]))
        yield platform
