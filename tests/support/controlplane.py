"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, and kwok managing fake GPU Nodes.

Jobs really create Pods, Pods really get scheduled onto GPU nodes, owner references really
cascade — everything except running containers, which kwok (or a test node agent) plays.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import kubernetes

from . import binaries
from .kubeconfig import write_kubeconfig
from .pki import CertificateAuthority, service_account_signing_key
from .processes import Process, free_port, http_ok

SERVICE_CIDR = "10.96.0.0/16"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
GPU_RESOURCE = "nvidia.com/gpu"
KWOK_STAGES = Path(__file__).with_name("kwok-stages.yaml")
# The apiserver's audit policy: at Metadata level (who did what to which object, and the
# response code; never a body, so never a Secret's data) every request of a ServiceAccount
# outside kube-system, i.e. of the workloads under test such as the operator (whose RBAC
# tests/e2e compares with what it really does). The control plane's own components and the
# admin client are left out: they are most of the traffic and nobody reads it.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "userGroups": ["system:serviceaccounts:kube-system"]},
        {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
        {"level": "None"},
    ],
}


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl call whose message carries what kubectl said (pytest shows only that)."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.stderr.strip()[-3000:]}"


def gpu_node(name: str, gpus: int = 8) -> dict:
    """A Node kwok keeps Ready, advertising GPUs the way the NVIDIA device plugin does."""
    resources = {"cpu": "64", "memory": "512Gi", "pods": "110", "ephemeral-storage": "1Ti", GPU_RESOURCE: str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                "nvidia.com/gpu.present": "true",
            },
        },
        "status": {"capacity": resources, "allocatable": resources},
    }


class ControlPlane:
    def __init__(self, workdir: Path, gpu_nodes: int = 4, detached: bool = False,
                 address: str = "127.0.0.1", controller_manager_args: Sequence[str] = ()) -> None:
        """``address``: where the apiserver listens and what it advertises as the `kubernetes`
        Service's endpoint; a real node's pods reach it there (tests/support/node.py), so a cluster
        with one passes the node's address. ``controller_manager_args``: extra kube-controller-manager flags."""
        self.workdir = workdir
        self.controller_manager_args = list(controller_manager_args)
        self.gpu_nodes = gpu_nodes
        self.detached = detached
        self.address = address
        self.processes: list[Process] = []
        self.logs = workdir / "logs"
        self.pki = workdir / "pki"
        self.apiserver_port = free_port()
        self.server = f"https://{address}:{self.apiserver_port}"
        # The issuer of ServiceAccount tokens is the apiserver's own URL, so that its OpenID
        # discovery (/.well-known/openid-configuration, /openid/v1/jwks) is fetchable by an
        # external verifier (MinIO's STS): tests/support/sts.py. Trust: self.ca.cert_path.
        self.issuer = self.server
        self.kubeconfig = workdir / "admin.kubeconfig"
        # JSON lines, one audit event each (tests/support/audit.py reads them); see AUDIT_POLICY.
        self.audit_log = workdir / "audit" / "audit.log"
        self.bin: dict[str, Path] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ControlPlane:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.pki.mkdir(parents=True, exist_ok=True)
        self.bin = binaries.ensure(["etcd", *binaries.CONTROL_PLANE_TOOLS, *(["kwok"] if self.gpu_nodes else [])])
        started = time.monotonic()
        try:
            self._make_credentials()
            self._start_etcd()
            self._start_apiserver()
            self._allow_issuer_discovery()
            self._start_controllers()
            if self.gpu_nodes:
                self._start_kwok()
                self._create_gpu_nodes()
        except BaseException:
            self.stop()
            raise
        print(f"[controlplane] up at {self.server} in {time.monotonic() - started:.1f}s", flush=True)
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def _spawn(self, name: str, argv: list[str]) -> Process:
        process = Process(name, argv, self.logs, detached=self.detached)
        self.processes.append(process)
        return process

    # -- components ----------------------------------------------------------------------------

    def _make_credentials(self) -> None:
        self.ca = CertificateAuthority(self.pki)
        self.serving = self.ca.issue(
            "apiserver", "kube-apiserver", server_ips=tuple(dict.fromkeys(("127.0.0.1", self.address, "10.96.0.1"))),
            server_dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
        )
        self.admin = self.ca.issue("admin", "test-admin", organizations=("system:masters",))
        # How the apiserver authenticates to kubelets (logs, exec); a real node trusts the CA.
        self.kubelet_client = self.ca.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                                            organizations=("system:masters",))
        self.sa_key = service_account_signing_key(self.pki)
        write_kubeconfig(self.kubeconfig, self.server, self.ca.cert_path, "admin",
                         client_cert=self.admin.cert, client_key=self.admin.key)
        # Each controller gets its own identity, so the RBAC the apiserver bootstraps applies.
        self.component_kubeconfigs = {}
        for component in ("kube-controller-manager", "kube-scheduler"):
            pair = self.ca.issue(component, f"system:{component}")
            self.component_kubeconfigs[component] = write_kubeconfig(
                self.workdir / f"{component}.kubeconfig", self.server, self.ca.cert_path, component,
                client_cert=pair.cert, client_key=pair.key,
            )

    def _start_etcd(self) -> None:
        client_port, peer_port = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        etcd = self._spawn("etcd", [
            str(self.bin["etcd"]),
            "--data-dir", str(self.workdir / "etcd"),
            "--listen-client-urls", self.etcd_url,
            "--advertise-client-urls", self.etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"default=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync",  # throwaway data: durability is not what we test
            "--log-level", "warn",
        ])
        etcd.wait_until(lambda: http_ok(f"{self.etcd_url}/health"), 60, "etcd health")

    def _start_apiserver(self) -> None:
        self.audit_log.parent.mkdir(parents=True, exist_ok=True)
        policy = self.audit_log.parent / "policy.json"  # JSON is YAML
        policy.write_text(json.dumps(AUDIT_POLICY))
        apiserver = self._spawn("kube-apiserver", [
            str(self.bin["kube-apiserver"]),
            "--etcd-servers", self.etcd_url,
            "--bind-address", self.address,
            "--advertise-address", self.address,
            "--kubelet-client-certificate", str(self.kubelet_client.cert),
            "--kubelet-client-key", str(self.kubelet_client.key),
            "--kubelet-preferred-address-types", "InternalIP",  # node names resolve nowhere here
            "--secure-port", str(self.apiserver_port),
            "--tls-cert-file", str(self.serving.cert),
            "--tls-private-key-file", str(self.serving.key),
            "--client-ca-file", str(self.ca.cert_path),
            "--authorization-mode", "Node,RBAC",
            # The first issuer signs; the second is still accepted (the in-cluster name).
            "--service-account-issuer", self.issuer,
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(self.sa_key.cert),
            "--service-account-signing-key-file", str(self.sa_key.key),
            "--service-cluster-ip-range", SERVICE_CIDR,
            "--allow-privileged=true",
            "--profiling=false",
            "--audit-policy-file", str(policy),
            "--audit-log-path", str(self.audit_log),
            "--audit-log-format", "json",
            "--audit-log-mode", "blocking",  # written before the response: a test reads it at once
            "--audit-log-maxsize", "0",  # one file, never rotated away under a reading test
            "--v=1",
        ])
        context = ssl.create_default_context(cafile=str(self.ca.cert_path))
        context.load_cert_chain(str(self.admin.cert), str(self.admin.key))
        apiserver.wait_until(lambda: http_ok(f"{self.server}/readyz", context), 120, "apiserver /readyz")

    def _allow_issuer_discovery(self) -> None:
        """Anonymous GETs of the discovery document and the JWKS, as the Kubernetes docs suggest
        for verifiers outside the cluster: they hold no credentials for the apiserver."""
        self.kubectl("create", "clusterrolebinding", "service-account-issuer-discovery-anonymous",
                     "--clusterrole=system:service-account-issuer-discovery", "--group=system:unauthenticated")

    @property
    def openid_config_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def _start_controllers(self) -> None:
        self._spawn("kube-controller-manager", [
            str(self.bin["kube-controller-manager"]),
            "--kubeconfig", str(self.component_kubeconfigs["kube-controller-manager"]),
            "--authentication-kubeconfig", str(self.component_kubeconfigs["kube-controller-manager"]),
            "--authorization-kubeconfig", str(self.component_kubeconfigs["kube-controller-manager"]),
            "--bind-address", "127.0.0.1",
            "--secure-port", str(free_port()),
            "--service-account-private-key-file", str(self.sa_key.key),
            "--root-ca-file", str(self.ca.cert_path),
            "--use-service-account-credentials=true",
            "--service-cluster-ip-range", SERVICE_CIDR,
            "--leader-elect=false",
            "--concurrent-gc-syncs", "5",
            "--v=1",
            *self.controller_manager_args,
        ])
        self._spawn("kube-scheduler", [
            str(self.bin["kube-scheduler"]),
            "--kubeconfig", str(self.component_kubeconfigs["kube-scheduler"]),
            "--authentication-kubeconfig", str(self.component_kubeconfigs["kube-scheduler"]),
            "--authorization-kubeconfig", str(self.component_kubeconfigs["kube-scheduler"]),
            "--bind-address", "127.0.0.1",
            "--secure-port", str(free_port()),
            "--leader-elect=false",
            "--v=1",
        ])
        # The default ServiceAccount appears once the controller-manager works; Pods need it.
        self.processes[-2].wait_until(
            lambda: self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0,
            120, "default ServiceAccount created by kube-controller-manager",
        )

    def _start_kwok(self) -> None:
        self._spawn("kwok", [
            str(self.bin["kwok"]),
            "--kubeconfig", str(self.kubeconfig),
            "--config", str(KWOK_STAGES),
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            "--node-ip", "127.0.0.1",
            "--node-port", str(free_port()),
            "--server-address", f"127.0.0.1:{free_port()}",
        ])

    def _create_gpu_nodes(self) -> None:
        nodes = [gpu_node(f"kwok-gpu-{i}") for i in range(self.gpu_nodes)]
        manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": nodes})
        self.kubectl("apply", "-f", "-", input=manifest)
        kwok = self.processes[-1]
        kwok.wait_until(self._gpu_nodes_ready, 120, "GPU nodes Ready")

    def _gpu_nodes_ready(self) -> bool:
        out = self.kubectl(
            "get", "nodes", "-l", "type=kwok", "-o",
            'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}',
            check=False,
        )
        return out.returncode == 0 and out.stdout.split() == ["True"] * self.gpu_nodes

    # -- clients -------------------------------------------------------------------------------

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                kubeconfig: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        argv = [str(self.bin["kubectl"]), "--kubeconfig", str(kubeconfig or self.kubeconfig), *args]
        result = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=timeout)
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def api_client(self, kubeconfig: Path | None = None) -> kubernetes.client.ApiClient:
        return kubernetes.config.new_client_from_config(config_file=str(kubeconfig or self.kubeconfig))

    def service_account_kubeconfig(self, namespace: str, name: str, expiration_seconds: int = 3600) -> Path:
        """A kubeconfig that authenticates as a ServiceAccount (a bound token, as a Pod gets)."""
        with self.api_client() as client:
            request = kubernetes.client.AuthenticationV1TokenRequest(
                spec=kubernetes.client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
            )
            token = kubernetes.client.CoreV1Api(client).create_namespaced_service_account_token(
                name, namespace, request
            ).status.token
        path = self.workdir / f"sa-{namespace}-{name}.kubeconfig"
        return write_kubeconfig(path, self.server, self.ca.cert_path, f"system:serviceaccount:{namespace}:{name}",
                                token=token, namespace=namespace)
