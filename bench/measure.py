"""What bench/operator_scale.py measures with: percentiles, a process's CPU and memory from
/proc, the requests one user made (apiserver audit log) and one key made (MinIO audit log) over
a window, a watch that records when each object was first seen, and timed creates (Arrival)."""

from __future__ import annotations

import datetime
import json
import logging
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("bench")
Key = tuple[str, str]  # (namespace, name)


def environment(repo: Path) -> str:
    """Date, cores, load average and the commit measured (and whether the tree differs from it)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True).stdout

    changed = sorted({line[3:].split("/")[0] for line in git("status", "--porcelain").splitlines()})
    tree = f" + uncommitted changes in {', '.join(changed)}" if changed else ""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; {os.cpu_count()} cores, "
            f"load average {load}; commit {git('rev-parse', '--short', 'HEAD').strip()}{tree}")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def memory_mib(pid: int) -> tuple[float, float]:
    """Resident memory now (VmRSS) and its peak so far (VmHWM), in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _utc(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def apiserver_requests(audit_log: Path, username: str, offset: int, since: datetime.datetime,
                       until: datetime.datetime) -> Counter:
    """The requests ``username`` made between ``since`` and ``until`` (received), by (verb,
    resource), one per audit ID; the log is read from byte ``offset`` (its size before ``since``)."""
    needle = username.encode()
    counted: dict[str, tuple[str, str]] = {}
    with audit_log.open("rb") as lines:
        lines.seek(offset)
        for line in lines:
            if needle not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:  # a line being written as the window closed
                continue
            if event["user"].get("username") != username:
                continue
            if not since <= _utc(event["requestReceivedTimestamp"]) <= until:
                continue
            ref = event.get("objectRef") or {}
            resource = ref.get("resource", event.get("requestURI", ""))
            if ref.get("subresource"):
                resource += "/" + ref["subresource"]
            counted[event["auditID"]] = (event["verb"], resource)
    return Counter(counted.values())


@dataclass
class Cost:
    """What a process did over a window: CPU, apiserver requests, S3 requests."""

    seconds: float
    cpu_seconds: float
    apiserver: Counter  # (verb, resource) -> requests
    s3: Counter  # S3 API -> requests

    def per_minute(self, n: float) -> float:
        return n * 60 / self.seconds if self.seconds else float("nan")

    @property
    def cpu_percent(self) -> float:
        return 100 * self.cpu_seconds / self.seconds if self.seconds else float("nan")

    def print(self, title: str, indent: str = "  ") -> None:
        print(f"{indent}{title} over {self.seconds:.0f} s: operator CPU {self.cpu_percent:.0f} % of a core, "
              f"apiserver {self.per_minute(sum(self.apiserver.values())):.0f}/min, "
              f"S3 {self.per_minute(sum(self.s3.values())):.0f}/min")
        for (verb, resource), n in self.apiserver.most_common():
            print(f"{indent}  apiserver {verb:>6} {resource:<28} {self.per_minute(n):>8.0f}/min")
        for name, n in self.s3.most_common():
            print(f"{indent}  S3 {name:<35} {self.per_minute(n):>8.0f}/min")


class CostMeter:
    """Measures a Cost between start() and stop(): the CPU of ``pid``, the apiserver requests of
    ``username`` (the apiserver's audit log) and the S3 requests signed with ``access_key`` (MinIO's
    audit log, a MinioServer started with audit=True)."""

    def __init__(self, pid: int, audit_log: Path, username: str, minio, access_key: str):
        self.pid, self.audit_log, self.username = pid, audit_log, username
        self.minio, self.access_key = minio, access_key

    def start(self) -> None:
        self._s3_index = len(self.minio.audit_log())  # every S3 request before now is in it
        self._offset = self.audit_log.stat().st_size
        self._since = datetime.datetime.now(datetime.UTC)
        self._started = time.monotonic()
        self._cpu = cpu_seconds(self.pid)

    def stop(self) -> Cost:
        cpu = cpu_seconds(self.pid) - self._cpu
        seconds = time.monotonic() - self._started
        until = datetime.datetime.now(datetime.UTC)
        s3 = Counter(r.api for r in self.minio.audit_log()[self._s3_index:] if r.access_key == self.access_key)
        api = apiserver_requests(self.audit_log, self.username, self._offset, self._since, until)
        return Cost(seconds, cpu, api, s3)


class FirstSeen:
    """When a watch first saw each object matching a label selector (``list_fn``: a list call of
    the Kubernetes client, e.g. BatchV1Api.list_job_for_all_namespaces), under ``key(object)``.

    Lists, then watches from the list's resourceVersion; an expired watch is relisted, objects
    first seen in a relist counted at its time. Times are time.monotonic() on receipt.
    """

    def __init__(self, list_fn: Callable, label_selector: str, key: Callable[[dict], Hashable | None]):
        self.list_fn, self.label_selector, self.key = list_fn, label_selector, key
        self.seen: dict[Hashable, float] = {}
        self._expected: set[Hashable] = set()
        self._changed = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"watch {label_selector}")
        self._thread.start()

    def wait(self, keys: Iterable[Hashable], deadline: float) -> set[Hashable]:
        """Wait until every one of ``keys`` was seen or time.monotonic() reaches ``deadline``;
        return those not seen."""
        with self._changed:
            self._expected = {k for k in keys if k not in self.seen}
            self._changed.wait_for(lambda: not self._expected, timeout=max(0.0, deadline - time.monotonic()))
            missing, self._expected = self._expected, set()
        return missing

    def stop(self) -> None:
        self._stopped = True

    def _record(self, obj: dict, when: float) -> None:
        key = self.key(obj)
        with self._changed:
            if key is None or key in self.seen:
                return
            self.seen[key] = when
            if key in self._expected:
                self._expected.discard(key)
                if not self._expected:
                    self._changed.notify_all()

    def _run(self) -> None:
        while not self._stopped:
            try:
                response = self.list_fn(label_selector=self.label_selector, _preload_content=False)
                listed, now = json.loads(response.data), time.monotonic()
                for item in listed["items"]:
                    self._record(item, now)
                self._watch(listed["metadata"]["resourceVersion"])
            # Expired (410; an ERROR event without deserializing fails on a KeyError in the
            # client) or the apiserver briefly away.
            except (ApiException, KeyError, OSError, ValueError, urllib3.exceptions.HTTPError) as err:
                if not self._stopped:
                    log.warning("watch %s: %s; relisting", self.label_selector, err)
                time.sleep(1)  # not hot against an apiserver that is away

    def _watch(self, version: str) -> None:
        while not self._stopped:
            stream = kubernetes.watch.Watch()
            for event in stream.stream(self.list_fn, label_selector=self.label_selector, resource_version=version,
                                       allow_watch_bookmarks=True, timeout_seconds=300, deserialize=False):
                when, obj = time.monotonic(), event["object"]
                version = obj["metadata"]["resourceVersion"]
                if event["type"] == "ADDED":
                    self._record(obj, when)


@dataclass
class Arrival:
    """A set of objects created, and when each one's first child was seen."""

    started: float
    sent: dict[Key, float]
    seen: dict[Key, float]
    apply_seconds: float

    @property
    def latencies(self) -> list[float]:
        return [self.seen[k] - self.sent[k] for k in self.seen]

    @property
    def missing(self) -> list[Key]:
        return sorted(k for k in self.sent if k not in self.seen)

    @property
    def last(self) -> float:
        """First create sent → last first child seen."""
        return max(self.seen.values(), default=float("nan")) - self.started

    def offsets(self, keys: list[Key]) -> list[float]:
        return [self.sent[k] - self.started for k in keys]


def apply(create: Callable[[str, dict], None], items: list, schedule: list[float] | None = None, threads: int = 4):
    """Create every (namespace, name, body) from ``threads`` threads; with ``schedule`` (seconds
    from the start, one per item) none before its time. Returns (start, send time per key, seconds)."""
    sent: dict[Key, float] = {}
    started = time.monotonic()

    def one(i: int) -> None:
        namespace, name, body = items[i]
        if schedule and (delay := started + schedule[i] - time.monotonic()) > 0:
            time.sleep(delay)  # the pace of the round this one anchors
        sent[(namespace, name)] = time.monotonic()
        create(namespace, body)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(len(items))))
    return started, sent, time.monotonic() - started


def arrive(watch: FirstSeen, create, items: list, timeout: float, schedule: list[float] | None = None,
           check: Callable[[], None] = lambda: None) -> Arrival:
    """Create ``items`` (see apply), then wait until ``watch`` saw each one's first child or
    ``timeout`` seconds from the first create passed; ``check`` (raising when the process that
    makes the children died) is called every 30 s of waiting."""
    started, sent, seconds = apply(create, items, schedule)
    deadline = started + timeout
    while watch.wait(sent, min(deadline, time.monotonic() + 30)) and time.monotonic() < deadline:
        check()
    return Arrival(started, sent, {k: watch.seen[k] for k in sent if k in watch.seen}, seconds)
