"""The real Kueue (sigs.k8s.io/kueue at binaries.KUEUE_VERSION) on a test ControlPlane.

Kueue's own CRDs and webhook manifests are read from its Go module (never copied into the
repo). The webhooks become URL webhooks on a loopback port, served with a cert from a CA of
our own whose bundle the apiserver gets, so the apiserver really calls Kueue. Kueue serves
and stores ``kueue.x-k8s.io/v1beta2``; v1beta1 is still served, through Kueue's conversion
webhook. The quota builders below are pure; :class:`Kueue` does the I/O.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path

import yaml

from . import binaries
from .controlplane import GPU_RESOURCE, ControlPlane
from .pki import CertificateAuthority
from .processes import Process, free_port, http_ok

API_VERSION = "kueue.x-k8s.io/v1beta2"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# Kueue labels the Workload it makes for a Job with the Job's uid (it also owns it).
JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"
NAMESPACE = "kueue-system"
# The names a release install gives them (config/default prefixes "kueue-").
WEBHOOK_CONFIGURATIONS = {"MutatingWebhookConfiguration": "kueue-mutating-webhook-configuration",
                          "ValidatingWebhookConfiguration": "kueue-validating-webhook-configuration"}
# The CRDs Kueue converts between v1beta1 and v1beta2 (config/components/crd/kustomization.yaml).
CONVERTED_CRDS = ("localqueues", "clusterqueues", "cohorts", "workloads", "multikueueclusters")
# Kueue reads its metrics serving cert from this fixed path when internal cert management is off
# (cmd/kueue/main.go): it gets one from a private overlay of /etc in its own mount namespace, so
# nothing is written outside the workdir. $1 overlay dir, $2 cert, $3 key, then the command.
# A session killed hard sends this shell a SIGTERM only (PR_SET_PDEATHSIG), and Kueue can hang in
# its graceful shutdown when the apiserver goes down with it: so it is killed outright.
_PRIVATE_ETC = r"""set -e
mount -t tmpfs kueue-etc "$1"
mkdir -p "$1/upper/kueue/metrics/certs" "$1/work"
cp "$2" "$1/upper/kueue/metrics/certs/tls.crt"
cp "$3" "$1/upper/kueue/metrics/certs/tls.key"
mount -t overlay kueue-etc -o "lowerdir=/etc,upperdir=$1/upper,workdir=$1/work" /etc
shift 3
"$@" &
kueue=$!
trap 'kill -KILL "$kueue"; exit 143' TERM INT HUP
wait "$kueue"
"""


# -- quota objects (pure) -----------------------------------------------------------------------

def resource_flavor(name: str = "default") -> dict:
    return {"apiVersion": API_VERSION, "kind": "ResourceFlavor", "metadata": {"name": name}}


def cluster_queue(name: str, gpus: int, cohort: str = "gpus", borrowing_limit: int | None = None,
                  namespace: str | None = None, flavor: str = "default") -> dict:
    """A ClusterQueue with ``gpus`` nominal GPUs (CPU and memory plentiful, so GPUs decide) in
    ``cohort``: it borrows idle GPUs of the cohort (at most ``borrowing_limit``, None: no limit),
    reclaims its own from any borrower, and lets higher priority preempt lower within itself.
    ``namespace``: the only namespace it admits from (None: all)."""
    gpu = {"name": GPU_RESOURCE, "nominalQuota": gpus}
    if borrowing_limit is not None:
        gpu["borrowingLimit"] = borrowing_limit
    selector = {"matchLabels": {"kubernetes.io/metadata.name": namespace}} if namespace else {}
    return {
        "apiVersion": API_VERSION, "kind": "ClusterQueue", "metadata": {"name": name},
        "spec": {
            "cohortName": cohort,
            "namespaceSelector": selector,
            "resourceGroups": [{
                "coveredResources": ["cpu", "memory", GPU_RESOURCE],
                "flavors": [{"name": flavor, "resources": [
                    {"name": "cpu", "nominalQuota": "1000"}, {"name": "memory", "nominalQuota": "4Ti"}, gpu,
                ]}],
            }],
            "preemption": {"reclaimWithinCohort": "Any", "withinClusterQueue": "LowerPriority"},
        },
    }


def local_queue(namespace: str, cluster_queue_name: str, name: str = "gpu") -> dict:
    return {"apiVersion": API_VERSION, "kind": "LocalQueue", "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterQueue": cluster_queue_name}}


def workload_priority_class(name: str, value: int, description: str = "") -> dict:
    return {"apiVersion": API_VERSION, "kind": "WorkloadPriorityClass", "metadata": {"name": name},
            "value": value, "description": description}


def tenant_queues(tenants: dict[str, int], cohort: str = "gpus", borrowing_limit: int | None = None,
                  queue: str = "gpu") -> list[dict]:
    """The default flavor, and per tenant namespace (mapped to its GPU quota) a ClusterQueue of the
    same name admitting only that namespace, plus a LocalQueue ``queue`` in it."""
    objs = [resource_flavor()]
    for namespace, gpus in tenants.items():
        objs += [cluster_queue(namespace, gpus, cohort, borrowing_limit, namespace),
                 local_queue(namespace, namespace, queue)]
    return objs


def condition(obj: dict, kind: str) -> dict | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), None)


def is_true(obj: dict, kind: str) -> bool:
    return (condition(obj, kind) or {}).get("status") == "True"


def pending(workload: dict) -> bool:
    """Kueue tried to reserve quota for the Workload and could not (the condition says why)."""
    return (condition(workload, "QuotaReserved") or {}).get("status") == "False"


# -- manifests from Kueue's module (pure but for reading them) ---------------------------------

def module_dir() -> Path:
    """Kueue's module source in the Go module cache (`go install` put it there)."""
    workdir = binaries.cache_root() / "src" / f"kueue-{binaries.KUEUE_VERSION}" / "gobin"
    workdir.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["go", "mod", "download", "-json", f"sigs.k8s.io/kueue@{binaries.KUEUE_VERSION}"],
                         cwd=workdir, env={**os.environ, "GOWORK": "off", "GOFLAGS": "-mod=mod"},
                         capture_output=True, text=True, check=True)
    return Path(json.loads(out.stdout)["Dir"])


def _load_all(path: Path) -> list[dict]:
    # libyaml when there: the pure Python loader takes seconds over Kueue's 1 MB of CRDs.
    return [o for o in yaml.load_all(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if o]


def crds(module: Path, base_url: str, ca_bundle: str) -> list[dict]:
    """Kueue's CRDs, the converted ones with their conversion webhook at ``base_url``/convert."""
    objs = [o for p in sorted((module / "config/components/crd/bases").glob("*.yaml")) for o in _load_all(p)]
    for crd in objs:
        if crd["spec"]["names"]["plural"] in CONVERTED_CRDS:
            crd["spec"]["conversion"] = {"strategy": "Webhook", "webhook": {
                "clientConfig": {"url": f"{base_url}/convert", "caBundle": ca_bundle},
                "conversionReviewVersions": ["v1"]}}
    return objs


def webhook_configurations(module: Path, base_url: str, ca_bundle: str) -> list[dict]:
    """Kueue's webhook configurations with each service reference made a URL at ``base_url``.
    (Its kustomization also keeps pod/deployment/statefulset webhooks out of kube-system and
    kueue-system; those integrations are off here, so Kueue answers them with a no-op.)"""
    objs = _load_all(module / "config/components/webhook/manifests.yaml")
    for obj in objs:
        obj["metadata"]["name"] = WEBHOOK_CONFIGURATIONS[obj["kind"]]
        for hook in obj["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": f"{base_url}{path}", "caBundle": ca_bundle}
    return objs


def configuration(webhook_port: int, cert_dir: Path, metrics_port: int, health_port: int) -> dict:
    """Kueue's Configuration for a manager outside the cluster: certs are ours, every port on
    loopback, no leader election, and only Jobs carrying a queue label are Kueue's."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2", "kind": "Configuration",
        "namespace": NAMESPACE,
        "internalCertManagement": {"enable": False},
        "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(cert_dir)},
        "metrics": {"bindAddress": f"127.0.0.1:{metrics_port}"},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "leaderElection": {"leaderElect": False},
        "manageJobsWithoutQueueName": False,
        "integrations": {"frameworks": ["batch/job"]},
        # Its on-demand visibility API server would want certs at /visibility and port 8082.
        "featureGates": {"VisibilityOnDemand": False},
    }


# -- the manager -------------------------------------------------------------------------------

class Kueue:
    """Kueue's manager as a local process, its webhooks registered with ``cluster``; its log is
    ``workdir``/kueue.log. ``stop()`` unregisters the webhooks and ends it."""

    def __init__(self, cluster: ControlPlane, workdir: Path) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.process: Process | None = None
        self.webhook_port, self.metrics_port, self.health_port = free_port(), free_port(), free_port()
        self.webhook_url = f"https://127.0.0.1:{self.webhook_port}"

    def start(self, timeout: float = 180) -> Kueue:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cert_dir = self.workdir / "certs"
        cert_dir.mkdir(exist_ok=True)
        # A CA of Kueue's own: the apiserver trusts it only through the caBundles below.
        ca = CertificateAuthority(cert_dir, common_name="kueue-webhook-ca")
        serving = ca.issue("tls", "kueue-webhook", server_ips=("127.0.0.1",))
        bundle = base64.b64encode(ca.cert_path.read_bytes()).decode()
        binary, module = binaries.ensure(["kueue"])["kueue"], module_dir()
        started = time.monotonic()
        try:
            definitions = crds(module, self.webhook_url, bundle)
            # Kueue's own namespace: where it would keep its objects (none with these settings).
            self.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}, *definitions])
            self.cluster.kubectl("wait", "--for=condition=Established", "--timeout=120s",
                                 *(f"crd/{crd['metadata']['name']}" for crd in definitions))
            self.apply(webhook_configurations(module, self.webhook_url, bundle))
            self._spawn(binary, serving.cert, serving.key, cert_dir)
            self.process.wait_until(lambda: http_ok(f"http://127.0.0.1:{self.health_port}/readyz"), timeout,
                                    f"readyz on 127.0.0.1:{self.health_port}")
            # Ready is Kueue's own word; the apiserver must also get through to its webhook.
            self.process.wait_until(self._webhook_answers, timeout,
                                    f"the apiserver calling Kueue's webhook at {self.webhook_url}")
        except BaseException:
            self.stop()
            raise
        print(f"[kueue] webhooks answering at {self.webhook_url} in {time.monotonic() - started:.1f}s", flush=True)
        return self

    def _spawn(self, binary: Path, cert: Path, key: Path, cert_dir: Path) -> None:
        config = self.workdir / "configuration.json"  # JSON is YAML
        config.write_text(json.dumps(configuration(self.webhook_port, cert_dir, self.metrics_port, self.health_port)))
        overlay = self.workdir / "etc-overlay"
        overlay.mkdir(exist_ok=True)
        # Without root, a user namespace grants the mounts (unprivileged overlayfs: Linux >= 5.11).
        user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
        argv = ["unshare", "--mount", "--propagation", "private", *user, "sh", "-c", _PRIVATE_ETC, "kueue-etc",
                str(overlay), str(cert), str(key), str(binary),
                f"--config={config}", f"--kubeconfig={self.cluster.kubeconfig}"]
        self.process = Process("kueue", argv, self.workdir)

    def _webhook_answers(self) -> bool:
        probe = json.dumps(resource_flavor("kueue-webhook-probe"))
        # The mutating webhook adds Kueue's finalizer: proof the answer came from Kueue.
        out = self.cluster.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=probe, check=False)
        return out.returncode == 0 and "kueue.x-k8s.io/resource-in-use" in out.stdout

    def stop(self) -> None:
        """Remove the webhooks first (a dead webhook with failurePolicy Fail blocks every Job
        and Pod of the cluster), then end the manager."""
        for kind, name in WEBHOOK_CONFIGURATIONS.items():
            self.cluster.kubectl("delete", kind, name, "--ignore-not-found", "--request-timeout=20s",
                                 check=False, timeout=30)
        if self.process:
            self.process.stop()
            self.process = None

    # -- clients -------------------------------------------------------------------------------

    def apply(self, objs: list[dict]) -> None:
        """Create or update objects, Kueue's through its webhooks. Server-side: Kueue's workloads
        CRD is far beyond the size limit of kubectl's last-applied annotation."""
        manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": objs})
        self.cluster.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=kueue-tests",
                             "-f", "-", input=manifest)

    def workload_of(self, namespace: str, job_uid: str) -> dict | None:
        """The Workload Kueue made for the Job with this uid, or None while there is none."""
        out = self.cluster.kubectl("get", "workloads.kueue.x-k8s.io", "-n", namespace,
                                   "-l", f"{JOB_UID_LABEL}={job_uid}", "-o", "json")
        items = json.loads(out.stdout)["items"]
        return items[0] if items else None
