"""A real Kubernetes node on this machine: kubelet, containerd and runc, a CNI bridge,
kube-proxy, CoreDNS and a device plugin that advertises fake `nvidia.com/gpu` devices.

Pods run as containers from images built by `make images`; Services, headless-Service pod DNS
names (`<pod>.<service>.<ns>.svc.cluster.local`) and pod IPs work as on a real cluster; GPU
requests are accounted by the kubelet's device manager (the devices are fake: containers see
`NVIDIA_VISIBLE_DEVICES` and no CUDA, so the trainer runs on the CPU). The host's side
(addresses, lock) comes first, from :class:`NodeHost`; then a control plane listening on
:data:`NODE_ADDRESS` (``ControlPlane(address=...)``), so that pods reach it; then the node.
See ../shared/notes/real-node.md for why each unusual setting is there.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path

import yaml

from . import binaries
from .containerd import Containerd
from .controlplane import GPU_RESOURCE, ControlPlane
from .kubeconfig import write_kubeconfig
from .node_host import NODE_ADDRESS, POD_SUBNET, NodeHost, unmount_under
from .processes import Process, free_port, http_ok
from .wait import wait_for

NODE_NAME = "dbt-node-0"
# Jobs that must land on the real node select it by this label (the node has no taint: the
# chart's operator Deployment has no toleration to give).
NODE_LABEL = "dreambooth.dev/test-node=kubelet"
CLUSTER_DOMAIN = "cluster.local"
# The kubelet's device manager listens here whatever its --root-dir (pluginapi.DevicePluginPath).
DEVICE_PLUGIN_DIR = Path("/var/lib/kubelet/device-plugins")


class RealNode:
    def __init__(self, cluster: ControlPlane, host: NodeHost, workdir: Path, images: Sequence[str] = (),
                 gpus: int = 4) -> None:
        if cluster.address != NODE_ADDRESS:
            raise ValueError(f"the control plane must listen on {NODE_ADDRESS} for pods to reach it")
        self.cluster = cluster
        self.workdir = workdir
        self.images = list(images)
        self.gpus = gpus
        self.logs = workdir / "logs"
        self.processes: dict[str, Process] = {}
        self.bin: dict[str, Path] = {}
        self.host = host
        self.containerd: Containerd | None = None

    def start(self) -> RealNode:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.bin = binaries.ensure(["kubelet", "kube-proxy", "coredns", "pause", "fake-gpu-device-plugin"])
        try:
            sandbox = self._pause_image()
            self.containerd = Containerd(self.workdir / "containerd", self.host.cni_config(self.workdir / "ipam"),
                                         sandbox).start()
            for image in (sandbox, *self.images):
                self.containerd.load_image(image)
            self._start_coredns()
            self._start_kubelet()
            self._start_kube_proxy()  # after the kubelet: it is healthy only once its Node exists
            self._start_device_plugin()
        except BaseException:
            self.stop()
            raise
        return self

    # -- parts -------------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> Process:
        self.processes[name] = Process(name, argv, self.logs)
        return self.processes[name]

    def _pause_image(self) -> str:
        """The pod sandbox image: tests/support/nodeparts' pause, imported into podman once."""
        name = f"localhost/dreambooth-test/pause:{binaries.TOOLS['pause'].version}"
        if subprocess.run(["podman", "image", "exists", name]).returncode != 0:
            archive = self.workdir / "pause.tar"
            with tarfile.open(archive, "w") as tar:
                tar.add(self.bin["pause"], arcname="pause")
            subprocess.run(["podman", "import", "--quiet", "--change", 'ENTRYPOINT ["/pause"]', str(archive), name],
                           check=True, capture_output=True)
        return name

    def _identity(self, name: str, common_name: str, organizations: tuple[str, ...] = ()) -> Path:
        pair = self.cluster.ca.issue(name, common_name, organizations=organizations)
        return write_kubeconfig(self.workdir / f"{name}.kubeconfig", self.cluster.server, self.cluster.ca.cert_path,
                                common_name, client_cert=pair.cert, client_key=pair.key)

    def _start_coredns(self) -> None:
        ready = free_port()
        corefile = self.workdir / "Corefile"
        # No upstream: a name outside the cluster is refused, never forwarded off the machine.
        corefile.write_text(
            f".:53 {{\n  bind {NODE_ADDRESS}\n  errors\n  ready 127.0.0.1:{ready}\n"
            f"  kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{\n"
            f"    kubeconfig {self.cluster.kubeconfig} admin\n    pods insecure\n    ttl 5\n"
            "    fallthrough in-addr.arpa ip6.arpa\n  }\n}\n")
        coredns = self._spawn("coredns", [str(self.bin["coredns"]), "-conf", str(corefile)])
        coredns.wait_until(lambda: http_ok(f"http://127.0.0.1:{ready}/ready"), 120, "CoreDNS ready")

    def _start_kube_proxy(self) -> None:
        healthz = free_port()
        config = self.workdir / "kube-proxy.yaml"
        config.write_text(yaml.safe_dump({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self._identity("kube-proxy", "system:kube-proxy"))},
            "hostnameOverride": NODE_NAME,
            "bindAddress": NODE_ADDRESS,
            "mode": "iptables",
            "clusterCIDR": POD_SUBNET,
            "nodePortAddresses": [f"{NODE_ADDRESS}/32"],
            # Zeros leave the machine's conntrack settings alone (setting them needs CAP_SYS_RESOURCE).
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            "healthzBindAddress": f"127.0.0.1:{healthz}",
        }))
        proxy = self._spawn("kube-proxy", [str(self.bin["kube-proxy"]), "--config", str(config), "--v=1"])
        proxy.wait_until(lambda: http_ok(f"http://127.0.0.1:{healthz}/healthz"), 120, "kube-proxy synced")

    def _start_kubelet(self) -> None:
        serving = self.cluster.ca.issue("kubelet-serving", NODE_NAME, server_ips=(NODE_ADDRESS,),
                                        server_dns=(NODE_NAME,))
        (self.workdir / "resolv.conf").write_text("")  # pods resolve through CoreDNS only
        config = self.workdir / "kubelet.yaml"
        config.write_text(yaml.safe_dump({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_ADDRESS,
            "port": free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": (healthz := free_port()),
            "tlsCertFile": str(serving.cert),
            "tlsPrivateKeyFile": str(serving.key),
            # The apiserver (logs, exec) proves itself with a CA-signed client certificate.
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                               "x509": {"clientCAFile": str(self.cluster.ca.cert_path)}},
            "authorization": {"mode": "AlwaysAllow"},
            "containerRuntimeEndpoint": self.containerd.endpoint,
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,  # this machine has cgroups v1 (hybrid)
            "failSwapOn": False,
            "enforceNodeAllocatable": [],
            "makeIPTablesUtilChains": False,
            "clusterDomain": CLUSTER_DOMAIN,
            "clusterDNS": [NODE_ADDRESS],
            "resolvConf": str(self.workdir / "resolv.conf"),
            "podLogsDir": str(self.workdir / "pod-logs"),
            # The images cannot be pulled again: never collect them, never evict for disk.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "maxPods": 110,
        }))
        # The device manager's checkpoint there would restore a previous run's allocations.
        shutil.rmtree(DEVICE_PLUGIN_DIR, ignore_errors=True)
        kubelet = self._spawn("kubelet", [
            str(self.bin["kubelet"]),
            "--config", str(config),
            "--kubeconfig", str(self._identity("kubelet", f"system:node:{NODE_NAME}", ("system:nodes",))),
            "--root-dir", str(self.workdir / "kubelet"),
            "--cert-dir", str(self.workdir / "kubelet-pki"),
            "--hostname-override", NODE_NAME,
            "--node-ip", NODE_ADDRESS,
            "--node-labels", NODE_LABEL,
            "--v=1",
        ])
        kubelet.wait_until(lambda: http_ok(f"http://127.0.0.1:{healthz}/healthz"), 120, "kubelet healthz")
        kubelet.wait_until(self._ready, 180, f"node {NODE_NAME} Ready")

    def _ready(self) -> bool:
        node = self._node()
        conditions = {c["type"]: c["status"] for c in (node or {}).get("status", {}).get("conditions", [])}
        return conditions.get("Ready") == "True"

    def _node(self) -> dict | None:
        out = self.cluster.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        return json.loads(out.stdout) if out.returncode == 0 else None

    def _start_device_plugin(self) -> None:
        plugin = self._spawn("fake-gpu-device-plugin", [
            str(self.bin["fake-gpu-device-plugin"]), "--resource", GPU_RESOURCE, "--count", str(self.gpus),
            "--plugin-dir", str(DEVICE_PLUGIN_DIR)])
        plugin.wait_until(lambda: self.allocatable(GPU_RESOURCE) == str(self.gpus), 120,
                          f"{self.gpus} {GPU_RESOURCE} allocatable on {NODE_NAME}")

    def allocatable(self, resource: str) -> str | None:
        return ((self._node() or {}).get("status", {}).get("allocatable") or {}).get(resource)

    # -- teardown ----------------------------------------------------------------------------

    def stop(self) -> None:
        if "kubelet" in self.processes:
            self._stop_pods()
        for name in ("fake-gpu-device-plugin", "kubelet", "kube-proxy", "coredns"):
            if process := self.processes.pop(name, None):
                process.stop()
        if "kube-proxy" in self.bin:  # its iptables chains outlive it
            subprocess.run([str(self.bin["kube-proxy"]), "--cleanup"], capture_output=True, check=False)
        if self.containerd:
            self.containerd.stop()
            self.containerd = None
        unmount_under(self.workdir)  # the kubelet bind-mounts its own directory

    def _stop_pods(self) -> None:
        """Pods are deleted through the API, so the kubelet stops them as it would on a drain."""
        self.cluster.kubectl("delete", "pods", "-A", "--field-selector", f"spec.nodeName={NODE_NAME}",
                             "--grace-period=2", "--wait=false", check=False)

        def running() -> list[str]:
            out = self.containerd.ctr("tasks", "ls", check=False).stdout.splitlines()[1:]
            return [line for line in out if "RUNNING" in line]

        try:
            wait_for(lambda: not running(), 120, lambda: f"the kubelet stopping every container: {running()}")
        except AssertionError as exc:  # teardown goes on; what is left is killed
            print(f"[node] {exc}", flush=True)
