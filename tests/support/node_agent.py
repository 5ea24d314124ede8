"""A test node agent: a GPU Node whose pods really run, as local processes of the project's venv.

    agent = NodeAgent(cluster, images={"ghcr.io/acme/dreambooth-trainer": TRAINER_ENTRYPOINT}).start()
    # pods with nodeSelector agent.node_selector run here; agent.logs(namespace, pod) has their output
    agent.stop()

It plays the kubelet the way kwok does, except that containers really run: the agent registers
a Node (labelled ``dreambooth.dev/test-node: agent``, advertising ``nvidia.com/gpu``), keeps it
Ready with a heartbeat and a node Lease, list-watches the pods bound to it, runs each container's
command with its resolved env (see :mod:`tests.support.podenv`, also for addresses and DNS) and
reports phase, exit codes, termination messages and restarts through the status subresource.

Each pod has a loopback address of its own (its ``status.podIP``), a directory
``<workdir>/pods/<namespace>_<pod>/`` with its ``HOME``, ``TMPDIR`` and termination message file
(path in ``TERMINATION_MESSAGE_PATH``), and a log ``<workdir>/logs/<namespace>_<pod>.log`` holding
stdout and stderr of all its containers and restarts, plus the agent's own lines about it.

An emptyDir is a directory ``volumes/<name>`` of the pod's, and env values naming a path inside
one (``HOME=/home/trainer`` with an emptyDir there) are rewritten to it; otherwise processes see
the host's filesystem.

Not supported: init containers (the pod fails), other volumes (paths are the host's), probes,
resource limits and GPU isolation, ``kubectl logs/exec``, Service (ClusterIP) addresses, a
pod's own host name resolving, ``resourceFieldRef``. Processes get a minimal environment
(``PASSTHROUGH_ENV`` of the test session, the venv first on ``PATH``), not the session's.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
from pathlib import Path

import kubernetes
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from .pod_run import (
    PASSTHROUGH_ENV,
    RESTART_BACKOFF_SECONDS,
    TRAINER_ENTRYPOINT,
    VENV_BIN,
    PodRun,
    _ignore,
    _now,
    log,
)
from .podenv import (
    TEST_NODE_LABEL,
    deletion_grace_seconds,
    node_manifest,
    secret_strings,
)

NODE_LEASE_NAMESPACE = "kube-node-lease"

__all__ = ["NodeAgent", "PodRun", "TRAINER_ENTRYPOINT", "PASSTHROUGH_ENV", "RESTART_BACKOFF_SECONDS", "VENV_BIN"]


class NodeAgent:
    """The Node `name` with `gpus` GPUs, running its pods under `workdir`.

    `images` maps an image (or an image prefix; the longest matching one wins) to its entrypoint
    argv, used when a container sets no ``command``. `env` is added to every process's env, as
    an image's ENV would be (the pod's env wins). Deletion waits at most `max_grace_seconds`.
    """

    def __init__(self, cluster, name: str = "agent-0", gpus: int = 8, workdir: Path | None = None,
                 images: dict[str, list[str]] | None = None, env: dict[str, str] | None = None,
                 heartbeat_seconds: float = 5.0, max_grace_seconds: float = 10.0) -> None:
        self.cluster = cluster
        self.name = name
        self.gpus = gpus
        self.workdir = Path(workdir or cluster.workdir / "node-agents" / name)
        self.images = dict(images or {})
        self.env = {"PYTHONUNBUFFERED": "1", **(env or {})}  # the "image's" ENV; the pod's env wins
        self.heartbeat_seconds = heartbeat_seconds
        self.max_grace_seconds = max_grace_seconds
        self.node_selector = {TEST_NODE_LABEL: "agent"}
        self._runs: dict[str, PodRun] = {}  # by pod uid
        self._deleted: set[str] = set()  # uids of pods without a run that the agent deleted
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watch = None  # the open watch response

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> NodeAgent:
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self._client, self._watch_client = self.cluster.api_client(), self.cluster.api_client()
        self.core = kubernetes.client.CoreV1Api(self._client)
        self._register()
        atexit.register(self.stop)
        for target in (self._heartbeat_loop, self._watch_loop):
            thread = threading.Thread(target=target, name=f"{self.name}{target.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)
        if not self._listed.wait(30):
            raise TimeoutError(f"node agent {self.name}: the first list of its pods did not complete")
        return self

    def stop(self) -> None:
        """Kill every pod process, stop the threads and deregister the Node."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        atexit.unregister(self.stop)
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.kill()
        if self._watch is not None:
            self._watch.shutdown()  # unblocks the watch thread's read
        for thread in self._threads:
            thread.join(timeout=5)
        try:
            _ignore((404,), self.core.delete_node, self.name)
        except Exception as error:  # the control plane may be gone first at the session's end
            log.warning("node agent %s: deleting its Node failed: %s", self.name, error)
        self._client.close()
        self._watch_client.close()

    # -- what the tests read -------------------------------------------------------------------

    def log_path(self, namespace: str, pod: str) -> Path:
        return self.workdir / "logs" / f"{namespace}_{pod}.log"

    def logs(self, namespace: str, pod: str) -> str:
        path = self.log_path(namespace, pod)
        return path.read_text(errors="replace") if path.exists() else ""

    def pid(self, namespace: str, pod: str, container: str | None = None) -> int | None:
        """The PID of the container's running process (the pod's first container by default)."""
        with self._lock:
            runs = [r for r in self._runs.values() if (r.namespace, r.name) == (namespace, pod)]
        for run in runs:
            for name, process in list(run.processes.items()):
                if container in (None, name) and process.poll() is None:
                    return process.pid
        return None

    # -- the Node --------------------------------------------------------------------------------

    def _register(self) -> None:
        node = node_manifest(self.name, self.gpus, _now())
        try:
            created = self.core.create_node(node)
        except ApiException as error:
            if error.status != 409:
                raise
            created = self.core.patch_node(self.name, {"metadata": node["metadata"]})
            self.core.patch_node_status(self.name, {"status": node["status"]})
        self._node_uid = created.metadata.uid
        self._renew_lease()

    def _renew_lease(self) -> None:
        coordination = kubernetes.client.CoordinationV1Api(self._client)
        renewal = {"spec": {"holderIdentity": self.name, "leaseDurationSeconds": 40, "renewTime": _now(micro=True)}}
        if _ignore((404,), coordination.patch_namespaced_lease, self.name, NODE_LEASE_NAMESPACE, renewal) is None:
            owner = {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self._node_uid}
            lease = {"metadata": {"name": self.name, "ownerReferences": [owner]}, **renewal}
            _ignore((409,), coordination.create_namespaced_lease, NODE_LEASE_NAMESPACE, lease)

    def _heartbeat_loop(self) -> None:
        # The node-lifecycle controller marks a Node NotReady (and taints it) when neither its
        # Lease nor its Ready condition has been renewed within its grace period.
        while not self._stopping.wait(self.heartbeat_seconds):
            try:
                self._renew_lease()
                # Conditions merge by type; without lastTransitionTime only the heartbeat moves.
                ready = {"type": "Ready", "status": "True", "lastHeartbeatTime": _now()}
                self.core.patch_node_status(self.name, {"status": {"conditions": [ready]}})
            except Exception as error:
                log.warning("node agent %s: heartbeat failed: %s", self.name, error)

    # -- pods ------------------------------------------------------------------------------------

    def _watch_loop(self) -> None:
        pods = kubernetes.client.CoreV1Api(self._watch_client)
        selector = f"spec.nodeName={self.name}"
        version = None
        while not self._stopping.is_set():
            try:
                if version is None:  # (re-)list, and forget pods deleted while nobody watched
                    listing = json.loads(pods.list_pod_for_all_namespaces(
                        field_selector=selector, _preload_content=False).data)
                    self._forget_all_but({p["metadata"]["uid"] for p in listing["items"]})
                    for pod in listing["items"]:
                        self._on_pod("ADDED", pod)
                    version = listing["metadata"]["resourceVersion"]
                    self._listed.set()
                self._watch = pods.list_pod_for_all_namespaces(
                    field_selector=selector, resource_version=version, watch=True, allow_watch_bookmarks=True,
                    timeout_seconds=300, _preload_content=False)
                if self._stopping.is_set():  # stop() may have missed this response
                    break
                for line in iter_resp_lines(self._watch):
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        raise ApiException(status=event["object"].get("code"), reason=event["object"].get("message"))
                    version = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self._on_pod(event["type"], event["object"])
            except Exception as error:
                if isinstance(error, ApiException) and error.status == 410:  # the version expired: list again
                    version = None
                elif not self._stopping.is_set():  # connection trouble; the apiserver may be going away
                    log.warning("node agent %s: pod watch failed: %s", self.name, error)
                    self._stopping.wait(1)

    def _forget_all_but(self, uids: set[str]) -> None:
        with self._lock:
            gone = [run for uid, run in self._runs.items() if uid not in uids]
        for run in gone:
            self._on_pod("DELETED", run.pod)

    def _on_pod(self, kind: str, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        with self._lock:
            if self._stopping.is_set():
                return
            run = self._runs.get(uid)
            if kind == "DELETED" or pod["metadata"].get("deletionTimestamp"):
                if run is not None:
                    run.delete(min(deletion_grace_seconds(pod), self.max_grace_seconds))
                elif kind != "DELETED" and uid not in self._deleted:
                    self._deleted.add(uid)  # nothing runs: the kubelet deletes it at once
                    _ignore((404,), self.core.delete_namespaced_pod, pod["metadata"]["name"],
                            pod["metadata"]["namespace"], grace_period_seconds=0)
                if kind == "DELETED":
                    self._runs.pop(uid, None)
                return
            if run is None and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                self._runs[uid] = PodRun(self, pod)
                self._runs[uid].start()

    def _lookup(self, namespace: str, kind: str, name: str) -> dict[str, str] | None:
        if kind == "Secret":
            secret = _ignore((404,), self.core.read_namespaced_secret, name, namespace)
            return None if secret is None else secret_strings(secret.data)
        config_map = _ignore((404,), self.core.read_namespaced_config_map, name, namespace)
        return None if config_map is None else dict(config_map.data or {})

    def base_env(self) -> dict[str, str]:
        env = {key: os.environ[key] for key in PASSTHROUGH_ENV if key in os.environ}
        env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", os.defpath)])
        return {**env, **self.env}


