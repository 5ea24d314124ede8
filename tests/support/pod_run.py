"""One pod on the test node agent: its containers run as local processes, its status is reported."""

from __future__ import annotations

import datetime
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import kubernetes
from kubernetes.client.exceptions import ApiException

from .podenv import (
    ContainerConfigError,
    ContainerRecord,
    container_argv,
    empty_dir_mounts,
    exit_code,
    map_mounted_path,
    pod_hostname,
    pod_status,
    resolve_env,
    termination_message,
)
from .processes import _die_with_parent, stop_pid

if TYPE_CHECKING:
    from .node_agent import NodeAgent

TRAINER_ENTRYPOINT = [sys.executable, "-m", "dreambooth_trainer"]
VENV_BIN = Path(sys.executable).parent
PASSTHROUGH_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES")
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
        mounts = empty_dir_mounts(self.pod, spec, self.dir)
        for local in mounts.values():
            local.mkdir(parents=True, exist_ok=True)
        env = {**self.agent.base_env(), "HOME": str(self.dir / "home"), "TMPDIR": str(self.dir / "tmp"),
               "HOSTNAME": pod_hostname(self.pod), "TERMINATION_MESSAGE_PATH": str(message_file),
               **{name: map_mounted_path(value, mounts) for name, value in env.items()}}
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
