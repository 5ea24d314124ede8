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

Not supported: init containers (the pod fails), volumes (paths are the host's), probes,
resource limits and GPU isolation, ``kubectl logs/exec``, Service (ClusterIP) addresses, a
pod's own host name resolving, ``resourceFieldRef``. Processes get a minimal environment
(``PASSTHROUGH_ENV`` of the test session, the venv first on ``PATH``), not the session's.
"""

from __future__ import annotations

import atexit
import datetime
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import kubernetes
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from .podenv import (
    TEST_NODE_LABEL,
    ContainerConfigError,
    ContainerRecord,
    container_argv,
    deletion_grace_seconds,
    exit_code,
    node_manifest,
    pod_hostname,
    pod_status,
    resolve_env,
    secret_strings,
    termination_message,
)
from .processes import _die_with_parent, stop_pid

TRAINER_ENTRYPOINT = [sys.executable, "-m", "dreambooth_trainer"]
VENV_BIN = Path(sys.executable).parent
PASSTHROUGH_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES")
NODE_LEASE_NAMESPACE = "kube-node-lease"
RESTART_BACKOFF_SECONDS = 1.0
log = logging.getLogger(__name__)


def _now(micro: bool = False) -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def _ignore(statuses: tuple[int, ...], call, *args, **kwargs):
    """`call`, with an ApiException of one of `statuses` (404: gone already) taken as done: None."""
    try:
        return call(*args, **kwargs)
    except ApiException as error:
        if error.status not in statuses:
            raise
        return None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


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


class PodRun:
    """One pod on the agent: a thread per container, a status patch per change of state."""

    def __init__(self, agent: NodeAgent, pod: dict) -> None:
        self.agent, self.pod = agent, pod
        self.namespace, self.name, self.uid = (pod["metadata"][key] for key in ("namespace", "name", "uid"))
        self.dir = agent.workdir / "pods" / f"{self.namespace}_{self.name}"
        self.log_path = agent.log_path(self.namespace, self.name)
        self.containers = [ContainerRecord(c["name"], c["image"]) for c in pod["spec"]["containers"]]
        self.processes: dict[str, subprocess.Popen] = {}  # by container name, while running
        self.deleting = threading.Event()
        self.fatal: tuple[str, str] | None = None  # (reason, message) failing the pod for good
        self.start_time = _now()
        self.reported: dict | None = None
        self._lock = threading.Lock()  # processes and deleting
        self._report_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for sub in ("home", "tmp"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        if self.pod["spec"].get("initContainers"):
            self.fatal = ("InitContainersUnsupported", "the test node agent does not run init containers")
            self._note(self.fatal[1])
        self._report()
        if self.fatal:
            return
        for spec, record in zip(self.pod["spec"]["containers"], self.containers, strict=True):
            thread = threading.Thread(target=self._run, args=(spec, record), daemon=True,
                                      name=f"{self.namespace}/{self.name}/{record.name}")
            thread.start()
            self._threads.append(thread)

    def delete(self, grace: float) -> None:
        """The kubelet's part of a graceful deletion, in the background: SIGTERM, up to `grace`
        seconds, SIGKILL, report the final status, then delete the Pod for good."""
        with self._lock:
            if self.deleting.is_set():
                return
            self.deleting.set()
        threading.Thread(target=self._terminate, args=(grace,), daemon=True,
                         name=f"{self.namespace}/{self.name}/terminate").start()

    def kill(self) -> None:
        """Stop every process now (the agent stops; nothing more is reported)."""
        with self._lock:
            self.deleting.set()
            pids = [process.pid for process in self.processes.values()]
        for pid in pids:
            stop_pid(pid, grace=2)

    # -- one container -----------------------------------------------------------------------------

    def _run(self, spec: dict, record: ContainerRecord) -> None:
        # This thread forks the process and waits for it: PR_SET_PDEATHSIG ties a process to
        # the thread that forked it, so the thread must outlive the process.
        policy = self.pod["spec"].get("restartPolicy", "Always")
        while not self.deleting.is_set():
            try:
                process, log_offset = self._launch(spec, record)
            except ContainerConfigError as error:
                self._note(f"{error.reason}: {error}")
                if not error.retry:
                    self.fatal = (error.reason, str(error))
                    record.not_started(error.reason, str(error), _now())
                    break
                record.waiting(error.reason, str(error))
                self._report()
                self.deleting.wait(2)  # the Secret or ConfigMap may appear
                continue
            if process is None:  # deleted before it started
                break
            process.wait()
            _signal_group(process.pid, signal.SIGKILL)  # what it left behind goes too, as with a cgroup
            with self._lock:
                del self.processes[record.name]
            code = exit_code(process.returncode)
            record.exited(code, self._termination_message(spec, record.name, log_offset, code), _now())
            if policy == "Never" or (policy == "OnFailure" and process.returncode == 0) or self.deleting.is_set():
                break
            record.restarting(RESTART_BACKOFF_SECONDS)
            self._report()
            self.deleting.wait(RESTART_BACKOFF_SECONDS)
        self._report()

    def _launch(self, spec: dict, record: ContainerRecord) -> tuple[subprocess.Popen | None, int]:
        message_file = self.dir / f"{record.name}.termination-log"
        message_file.write_text("")
        try:
            env = resolve_env(self.pod, spec, lambda kind, name: self.agent._lookup(self.namespace, kind, name))
        except ApiException as error:
            raise ContainerConfigError(f"reading Secrets and ConfigMaps failed: {error.reason}", retry=True) from error
        env = {**self.agent.base_env(), "HOME": str(self.dir / "home"), "TMPDIR": str(self.dir / "tmp"),
               "HOSTNAME": pod_hostname(self.pod), "TERMINATION_MESSAGE_PATH": str(message_file), **env}
        search_path = [VENV_BIN, *(Path(p) for p in env.get("PATH", "").split(os.pathsep) if p)]
        argv = container_argv(self.pod, spec, env, self.agent.images, search_path)
        with self._lock, self.log_path.open("ab") as log_file:
            if self.deleting.is_set():
                return None, 0
            log_offset = log_file.tell()
            try:
                process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                           env=env, cwd=self.dir, preexec_fn=_die_with_parent, start_new_session=True)
            except OSError as error:
                raise ContainerConfigError(f"starting {argv[0]}: {error}", reason="StartError") from error
            self.processes[record.name] = process
        record.started(process.pid, _now())
        self._report()
        return process, log_offset

    def _termination_message(self, spec: dict, container: str, log_offset: int, code: int) -> str:
        with self.log_path.open("rb") as log_file:
            log_file.seek(max(log_offset, log_file.seek(0, os.SEEK_END) - 65536))
            tail = log_file.read().decode("utf-8", "replace")
        written = (self.dir / f"{container}.termination-log").read_text(errors="replace")
        return termination_message(written, tail, spec.get("terminationMessagePolicy"), code)

    # -- the pod -----------------------------------------------------------------------------------

    def _terminate(self, grace: float) -> None:
        self._signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._signal(signal.SIGKILL)
        for thread in self._threads:
            thread.join()
        self._report()
        options = kubernetes.client.V1DeleteOptions(
            grace_period_seconds=0, preconditions=kubernetes.client.V1Preconditions(uid=self.uid))
        self._api(self.agent.core.delete_namespaced_pod, self.name, self.namespace, body=options)

    def _signal(self, sig: signal.Signals) -> None:
        with self._lock:
            for process in self.processes.values():
                _signal_group(process.pid, sig)

    def _report(self) -> None:
        if self.agent._stopping.is_set():  # a kubelet that stopped reports nothing
            return
        with self._report_lock:
            status = pod_status(self.pod, self.containers, self.start_time, _now(), self.reported,
                                self.deleting.is_set(), self.fatal)
            if status != self.reported:
                # metadata.uid is a precondition: a new pod of the same name is not ours.
                self._api(self.agent.core.patch_namespaced_pod_status, self.name, self.namespace,
                          {"metadata": {"uid": self.uid}, "status": status})
                self.reported = status

    def _api(self, call, *args, **kwargs) -> None:
        try:
            _ignore((404, 409), call, *args, **kwargs)
        except Exception as error:
            log.warning("node agent: %s on pod %s/%s failed: %s", call.__name__, self.namespace, self.name, error)

    def _note(self, line: str) -> None:
        with self.log_path.open("a") as log_file:
            log_file.write(f"[node-agent] {line}\n")
