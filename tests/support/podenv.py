"""What the test node agent makes of a Pod before and after running it (pure, no client).

- The pod's address: a loopback address 127.X.Y.Z derived from (namespace, hostname), so it is
  known before the pod starts and a peer can compute it from a DNS name alone.
- The container's environment: literal values, ``$(VAR)`` references, Secret and ConfigMap
  keys (``valueFrom`` and ``envFrom``) and the downward API (``fieldRef``).
- emptyDir volumes: a directory of the pod's each; env values naming a path inside one are
  rewritten to it (args are not, and processes otherwise see the host's filesystem).
- Pod DNS names: there is no cluster DNS, so names of pods behind a headless Service
  (``<hostname>.<subdomain>.<namespace>.svc[.cluster.local]``, and ``<hostname>.<subdomain>[.<namespace>]``
  for the pod's own subdomain) are rewritten to the target pod's loopback address in env values,
  command and args before the process starts. Service (ClusterIP) names are left alone.
- The argv: the container's command, or the image's entrypoint from the agent's image table,
  plus args; a bare tool name is looked up in the project's venv first, then ``PATH``.
- The pod's phase and the container statuses reported back to the API server.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

HOST_IP = "127.0.0.1"
CLUSTER_DOMAIN = "cluster.local"
TERMINATION_MESSAGE_LINES = 20
TERMINATION_MESSAGE_BYTES = 4096

# (kind, name) -> the object's data as strings, or None when the object does not exist.
Lookup = Callable[[str, str], "Mapping[str, str] | None"]


class ContainerConfigError(Exception):
    """The container cannot be started as specified.

    ``retry``: the kubelet would try again (a Secret or ConfigMap that may appear later);
    otherwise the pod fails with ``reason``.
    """

    def __init__(self, message: str, reason: str = "CreateContainerConfigError", retry: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry = retry


# -- addresses and names ---------------------------------------------------------------------


def pod_hostname(pod: dict) -> str:
    return pod["spec"].get("hostname") or pod["metadata"]["name"][:63]


def loopback_ip(namespace: str, hostname: str) -> str:
    """127.X.Y.Z with X in 1..254: never 127.0.0.1 (the node), never a .0 or .255 octet at the ends."""
    digest = hashlib.sha256(f"{namespace}/{hostname}".encode()).digest()
    return f"127.{1 + digest[0] % 254}.{digest[1]}.{1 + digest[2] % 254}"


def pod_ip(pod: dict) -> str:
    return loopback_ip(pod["metadata"]["namespace"], pod_hostname(pod))


_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_BEFORE = r"(?<![-\w.])"  # a name starts at a word boundary, not inside a longer name
_AFTER = r"\.?(?![-\w]|\.\w)"  # and ends there (an FQDN's trailing dot allowed)
_POD_FQDN = re.compile(rf"{_BEFORE}({_LABEL})\.{_LABEL}\.({_LABEL})\.svc(?:\.{re.escape(CLUSTER_DOMAIN)})?{_AFTER}")


def rewrite_pod_dns(text: str, namespace: str, subdomain: str | None = None) -> str:
    """Replace pod DNS names in `text` with the pods' loopback addresses.

    Full names ``<host>.<sub>.<ns>.svc[.cluster.local]`` are rewritten whatever the subdomain
    (whether a headless Service of that name exists is not checked); the short forms a pod's
    DNS search path allows, ``<host>.<sub>`` and ``<host>.<sub>.<ns>``, only for the pod's own
    subdomain and namespace, since two or three labels may as well be a real host name.
    """
    text = _POD_FQDN.sub(lambda m: loopback_ip(m.group(2), m.group(1)), text)
    if subdomain:
        short = re.compile(rf"{_BEFORE}({_LABEL})\.{re.escape(subdomain)}(?:\.{re.escape(namespace)})?{_AFTER}")
        text = short.sub(lambda m: loopback_ip(namespace, m.group(1)), text)
    return text


# -- environment -----------------------------------------------------------------------------

_REFERENCE = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_SUBSCRIPT = re.compile(r"metadata\.(labels|annotations)\['(.+)'\]")


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: defined names are replaced, others kept, ``$$`` is ``$``."""
    return _REFERENCE.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)


def field_value(pod: dict, path: str) -> str:
    """The downward API value of `path`, as the kubelet gives it to an env var."""
    metadata, spec = pod["metadata"], pod["spec"]
    if match := _SUBSCRIPT.fullmatch(path):
        return (metadata.get(match.group(1)) or {}).get(match.group(2), "")
    values = {
        "metadata.name": metadata["name"],
        "metadata.namespace": metadata["namespace"],
        "metadata.uid": metadata.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": HOST_IP,
        "status.hostIPs": HOST_IP,
        "status.podIP": pod_ip(pod),
        "status.podIPs": pod_ip(pod),
    }
    if path not in values:
        raise ContainerConfigError(f"fieldRef {path!r} is not supported by the test node agent")
    return values[path]


def secret_strings(data: Mapping[str, str] | None) -> dict[str, str]:
    """A Secret's base64 ``data`` as text."""
    return {key: base64.b64decode(value).decode("utf-8", "replace") for key, value in (data or {}).items()}


def _source(lookup: Lookup, kind: str, ref: dict) -> Mapping[str, str] | None:
    data = lookup(kind, ref["name"])
    if data is None and not ref.get("optional"):
        raise ContainerConfigError(f'{kind.lower()} "{ref["name"]}" not found', retry=True)
    return data


def _key(lookup: Lookup, kind: str, ref: dict) -> str | None:
    data = _source(lookup, kind, ref)
    if data is not None and ref["key"] in data:
        return data[ref["key"]]
    if ref.get("optional"):
        return None
    raise ContainerConfigError(f'couldn\'t find key {ref["key"]} in {kind} {ref["name"]}', retry=True)


def _value_from(pod: dict, source: dict, lookup: Lookup) -> str | None:
    if "fieldRef" in source:
        return field_value(pod, source["fieldRef"]["fieldPath"])
    if "secretKeyRef" in source:
        return _key(lookup, "Secret", source["secretKeyRef"])
    if "configMapKeyRef" in source:
        return _key(lookup, "ConfigMap", source["configMapKeyRef"])
    raise ContainerConfigError(f"valueFrom {sorted(source)} is not supported by the test node agent")


def resolve_env(pod: dict, container: dict, lookup: Lookup) -> dict[str, str]:
    """The container's env: ``envFrom`` sources in order, then ``env``, later names winning.

    Values are ``$(VAR)``-expanded against the names defined before them, then pod DNS names
    in them are rewritten to loopback addresses.
    """
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        kind, ref = ("Secret", source["secretRef"]) if "secretRef" in source else ("ConfigMap", source["configMapRef"])
        for key, value in (_source(lookup, kind, ref) or {}).items():
            name = source.get("prefix", "") + key
            if _ENV_NAME.fullmatch(name):  # the kubelet skips keys that are not valid names
                env[name] = value
    for var in container.get("env") or []:
        if "valueFrom" in var:
            value = _value_from(pod, var["valueFrom"], lookup)
            if value is None:  # an optional reference that is absent
                continue
            env[var["name"]] = value
        else:
            env[var["name"]] = expand(var.get("value", ""), env)
    namespace, subdomain = pod["metadata"]["namespace"], pod["spec"].get("subdomain")
    return {name: rewrite_pod_dns(value, namespace, subdomain) for name, value in env.items()}


# -- volumes ----------------------------------------------------------------------------------


def empty_dir_mounts(pod: dict, container: dict, pod_dir: Path) -> dict[str, Path]:
    """mountPath -> the directory standing in for each emptyDir the container mounts:
    ``<pod_dir>/volumes/<name>[/<subPath>]``, shared by the pod's containers and kept across
    restarts, as an emptyDir is. Other kinds of volume are left out."""
    empty = {v["name"] for v in pod["spec"].get("volumes") or [] if "emptyDir" in v}
    return {m["mountPath"].rstrip("/") or "/": pod_dir / "volumes" / m["name"] / m.get("subPath", "")
            for m in container.get("volumeMounts") or [] if m["name"] in empty}


def map_mounted_path(value: str, mounts: Mapping[str, Path]) -> str:
    """`value` moved into the stand-in directory when it is a path inside a mounted emptyDir
    (``/tmp`` or ``/tmp/x`` with one at ``/tmp``; the deepest mount wins), else unchanged.

    The process sees the host's filesystem: without this a pod's ``HOME=/home/trainer`` would be
    the host's /home/trainer, shared by every pod and every test session."""
    for mount in sorted(mounts, key=len, reverse=True):
        if value == mount or value.startswith(mount.rstrip("/") + "/"):
            return str(mounts[mount]) + value[len(mount.rstrip("/")):]
    return value


# -- argv -------------------------------------------------------------------------------------


def image_entrypoint(image: str, images: Mapping[str, list[str]]) -> list[str] | None:
    """The entrypoint of `image`: an exact entry of `images`, else the longest key it starts with."""
    if image in images:
        return list(images[image])
    prefixes = [key for key in images if image.startswith(key)]
    return list(images[max(prefixes, key=len)]) if prefixes else None


def find_executable(name: str, search_path: list[Path]) -> str:
    if os.sep in name:
        return name
    found = shutil.which(name, path=os.pathsep.join(str(p) for p in search_path))
    if not found:
        raise ContainerConfigError(f'exec: "{name}": executable file not found in $PATH', reason="StartError")
    return found


def container_argv(pod: dict, container: dict, env: Mapping[str, str], images: Mapping[str, list[str]],
                   search_path: list[Path]) -> list[str]:
    """command (or the image's entrypoint) + args, ``$(VAR)``-expanded, pod DNS names rewritten."""
    entrypoint = container.get("command") or image_entrypoint(container["image"], images)
    if not entrypoint:
        raise ContainerConfigError(
            f'image "{container["image"]}" is unknown to the test node agent and the container sets no command',
            reason="ErrImageUnknown",
        )
    namespace, subdomain = pod["metadata"]["namespace"], pod["spec"].get("subdomain")
    argv = [rewrite_pod_dns(expand(arg, env), namespace, subdomain)
            for arg in [*entrypoint, *(container.get("args") or [])]]
    return [find_executable(argv[0], search_path), *argv[1:]]


# -- status ------------------------------------------------------------------------------------


def deletion_grace_seconds(pod: dict) -> float:
    """How long a deleted pod's processes get between SIGTERM and SIGKILL."""
    grace = pod["metadata"].get("deletionGracePeriodSeconds")
    return float(pod["spec"].get("terminationGracePeriodSeconds", 30) if grace is None else grace)


def termination_message(written: str, log_tail: str, policy: str | None, exit_code: int) -> str:
    """What the container wrote to its termination message path, else (FallbackToLogsOnError and
    a failure) the last lines of its log; at most 4 KiB either way."""
    message = written
    if not message.strip() and policy == "FallbackToLogsOnError" and exit_code != 0:
        message = "\n".join(log_tail.splitlines()[-TERMINATION_MESSAGE_LINES:])
    return message.encode()[-TERMINATION_MESSAGE_BYTES:].decode("utf-8", "ignore")


def exit_code(returncode: int) -> int:
    """A container's exit code from Popen's returncode: killed by signal N (-N) reads 128+N."""
    return returncode if returncode >= 0 else 128 - returncode


@dataclass
class ContainerRecord:
    """One container as the agent last saw it; `state` holds one of waiting/running/terminated."""

    name: str
    image: str
    state: dict = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict = field(default_factory=dict)
    restart_count: int = 0
    pid: int | None = None

    def waiting(self, reason: str, message: str) -> None:
        self.state = {"waiting": {"reason": reason, "message": message}}

    def started(self, pid: int, now: str) -> None:
        self.pid, self.state = pid, {"running": {"startedAt": now}}

    def exited(self, code: int, message: str, now: str) -> None:
        self.state = {"terminated": {
            "exitCode": code, "reason": "Completed" if code == 0 else "Error", "finishedAt": now,
            "startedAt": self.state.get("running", {}).get("startedAt", now), "containerID": f"agent://{self.pid}",
            **({"message": message} if message else {}),
        }}

    def not_started(self, reason: str, message: str, now: str) -> None:
        """It can never start (as containerd reports an exec failure: exit code 128)."""
        self.state = {"terminated": {"exitCode": 128, "reason": reason, "message": message, "finishedAt": now}}

    def restarting(self, backoff_seconds: float) -> None:
        self.last_state, self.restart_count = self.state, self.restart_count + 1
        self.waiting("CrashLoopBackOff", f"back-off {backoff_seconds:g}s restarting container")

    def status(self) -> dict:
        return {
            "name": self.name, "image": self.image, "imageID": "", "restartCount": self.restart_count,
            "containerID": f"agent://{self.pid}" if self.pid else None,
            "ready": "running" in self.state, "started": "running" in self.state,
            "state": _exclusive(self.state), "lastState": _exclusive(self.last_state),
        }


def _exclusive(state: dict) -> dict:
    # A strategic merge patch would merge the old state into the new one: null the other keys.
    return {key: state.get(key) for key in ("waiting", "running", "terminated")}


def pod_phase(restart_policy: str, containers: list[ContainerRecord], deleting: bool = False) -> str:
    """The kubelet's phase rule, without init containers. A pod being deleted never restarts
    a container, so once nothing runs it is terminal."""
    never_started = any("waiting" in c.state and not c.last_state for c in containers)
    if never_started and not deleting:
        return "Pending"
    if any("running" in c.state for c in containers):
        return "Running"
    succeeded = all(c.state.get("terminated", {}).get("exitCode") == 0 for c in containers)
    if deleting or restart_policy == "Never":
        return "Succeeded" if succeeded else "Failed"
    return "Succeeded" if succeeded and restart_policy == "OnFailure" else "Running"


def pod_status(pod: dict, containers: list[ContainerRecord], start_time: str, now: str,
               previous: dict | None = None, deleting: bool = False, fatal: tuple[str, str] | None = None) -> dict:
    """The pod status the kubelet would report; `previous` is the last one reported, whose
    conditions keep their lastTransitionTime until their status flips; `fatal` a (reason,
    message) that fails the pod whatever its restart policy."""
    phase = "Failed" if fatal else pod_phase(pod["spec"].get("restartPolicy", "Always"), containers, deleting)
    ready = str(phase == "Running" and all("running" in c.state for c in containers))
    before = {c["type"]: c for c in (previous or {}).get("conditions", [])}
    conditions = []
    for kind, status in (("PodReadyToStartContainers", "True"), ("Initialized", "True"),
                         ("ContainersReady", ready), ("Ready", ready)):
        since = before[kind]["lastTransitionTime"] if before.get(kind, {}).get("status") == status else now
        conditions.append({"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": since})
    ip = pod_ip(pod)
    status = {
        "phase": phase, "hostIP": HOST_IP, "hostIPs": [{"ip": HOST_IP}], "podIP": ip, "podIPs": [{"ip": ip}],
        "startTime": start_time, "conditions": conditions, "containerStatuses": [c.status() for c in containers],
    }
    if fatal:
        status["reason"], status["message"] = fatal
    return status


TEST_NODE_LABEL = "dreambooth.dev/test-node"
GPU_RESOURCE = "nvidia.com/gpu"


def node_manifest(name: str, gpus: int, now: str) -> dict:
    """A Ready Node advertising `gpus` GPUs, labelled for the tests' nodeSelector; no taints."""
    resources = {"cpu": "64", "memory": "512Gi", "pods": "110", "ephemeral-storage": "1Ti", GPU_RESOURCE: str(gpus)}
    healthy = {"MemoryPressure": "KubeletHasSufficientMemory", "DiskPressure": "KubeletHasNoDiskPressure",
               "PIDPressure": "KubeletHasSufficientPID"}
    conditions = [{"type": kind, "status": "False", "reason": reason, "lastHeartbeatTime": now,
                   "lastTransitionTime": now} for kind, reason in healthy.items()]
    conditions.append({"type": "Ready", "status": "True", "reason": "KubeletReady",
                       "message": "test node agent is posting ready status",
                       "lastHeartbeatTime": now, "lastTransitionTime": now})
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
              TEST_NODE_LABEL: "agent", "nvidia.com/gpu.present": "true"}
    return {
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
        "status": {
            "capacity": resources, "allocatable": resources, "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": HOST_IP}, {"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": "test-node-agent", "operatingSystem": "linux", "architecture": "amd64",
                         "containerRuntimeVersion": "local-process://1"},
        },
    }
