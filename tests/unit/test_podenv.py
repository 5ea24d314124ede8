"""The node agent's pure parts: pod addresses and DNS names, env resolution, argv, phase, status."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest

from tests.support.podenv import (
    ContainerConfigError,
    ContainerRecord,
    container_argv,
    deletion_grace_seconds,
    exit_code,
    expand,
    loopback_ip,
    node_manifest,
    pod_ip,
    pod_phase,
    pod_status,
    resolve_env,
    rewrite_pod_dns,
    secret_strings,
    termination_message,
)

INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
VENV_BIN = Path(sys.executable).parent


def make_pod(name="train-0-abcde", namespace="team-a", hostname=None, subdomain=None, index="1", env=(),
             env_from=(), command=None, args=(), image="trainer:1") -> dict:
    container = {"name": "main", "image": image, "env": list(env), "envFrom": list(env_from), "args": list(args)}
    if command is not None:
        container["command"] = command
    spec = {"nodeName": "agent-0", "restartPolicy": "Never", "serviceAccountName": "default",
            "containers": [container]}
    spec.update({k: v for k, v in {"hostname": hostname, "subdomain": subdomain}.items() if v})
    metadata = {"name": name, "namespace": namespace, "uid": "uid-1", "labels": {"app": "dreambooth"},
                "annotations": {"batch.kubernetes.io/job-completion-index": index}}
    return {"metadata": metadata, "spec": spec}


OBJECTS = {
    ("Secret", "creds"): {"token": "s3cr3t", "AWS_ACCESS_KEY_ID": "minio"},
    ("ConfigMap", "settings"): {"greeting": "hello", "mode": "fast", "9lives": "invalid name"},
}


def lookup(kind, name):
    return OBJECTS.get((kind, name))


def env_of(pod: dict) -> dict:
    return resolve_env(pod, pod["spec"]["containers"][0], lookup)


# -- addresses and names ---------------------------------------------------------------------------


def test_loopback_ip_is_stable_distinct_and_never_the_node():
    ips = {loopback_ip("ns", f"job-{i}") for i in range(200)}
    assert len(ips) == 200
    assert loopback_ip("ns", "job-0") == loopback_ip("ns", "job-0") != loopback_ip("other", "job-0")
    for ip in ips:
        octets = [int(o) for o in ip.split(".")]
        assert octets[0] == 127 and 1 <= octets[1] <= 254 and 1 <= octets[3] <= 254


def test_pod_ip_uses_the_hostname_when_set():
    assert pod_ip(make_pod(name="meet-0-xyz", hostname="meet-0")) == loopback_ip("team-a", "meet-0")
    assert pod_ip(make_pod(name="solo")) == loopback_ip("team-a", "solo")


IP = loopback_ip


@pytest.mark.parametrize(("text", "subdomain", "expected"), [
    ("meet-0.svc.team-b.svc", None, IP("team-b", "meet-0")),
    ("tcp://meet-0.svc.team-b.svc:29500", None, f"tcp://{IP('team-b', 'meet-0')}:29500"),
    ("meet-0.svc.team-a.svc.cluster.local", None, IP("team-a", "meet-0")),
    ("meet-0.svc.team-a.svc.cluster.local.", None, IP("team-a", "meet-0")),
    ("w-0.workers.team-a.svc,w-1.workers.team-a.svc", None, f"{IP('team-a', 'w-0')},{IP('team-a', 'w-1')}"),
    ("meet-0.workers", "workers", IP("team-a", "meet-0")),
    ("meet-0.workers.team-a:80", "workers", f"{IP('team-a', 'meet-0')}:80"),
    # left alone: no subdomain of ours, Service names, longer names, real hosts
    ("meet-0.workers", None, "meet-0.workers"),
    ("meet-0.other", "workers", "meet-0.other"),
    ("minio.storage.svc:9000", None, "minio.storage.svc:9000"),
    ("a.meet-0.svc.team-a.svc", None, "a.meet-0.svc.team-a.svc"),
    ("meet-0.svc.team-a.svc.example.com", None, "meet-0.svc.team-a.svc.example.com"),
    ("s3.amazonaws.com", "workers", "s3.amazonaws.com"),
    ('{"uri": "s3://bucket/meet-0.workers.txt"}', "workers", '{"uri": "s3://bucket/meet-0.workers.txt"}'),
])
def test_rewrite_pod_dns(text, subdomain, expected):
    assert rewrite_pod_dns(text, "team-a", subdomain) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("$(A)-$(B)", "1-$(B)"),
    ("$$(A)", "$(A)"),
    ("a$$b", "a$b"),
    ("cost $5 $(", "cost $5 $("),
    ("$(A)$(A)", "11"),
])
def test_expand_like_kubernetes(value, expected):
    assert expand(value, {"A": "1"}) == expected


# -- env ---------------------------------------------------------------------------------------------


def test_env_resolves_literals_references_and_the_downward_api():
    env = env_of(make_pod(hostname="train-0", subdomain="workers", env=[
        {"name": "INDEX", "valueFrom": {"fieldRef": {"fieldPath": INDEX}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}}},
        {"name": "BOTH", "value": "$(GREETING)-$(INDEX)-$(LATER)"},
        {"name": "LATER", "value": "x"},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "MISSING_LABEL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['nope']"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "MASTER_ADDR", "value": "train-0.workers"},
    ]))
    assert env == {
        "INDEX": "1", "TOKEN": "s3cr3t", "GREETING": "hello", "BOTH": "hello-1-$(LATER)", "LATER": "x",
        "APP": "dreambooth", "MISSING_LABEL": "", "NODE": "agent-0", "UID": "uid-1",
        "IP": IP("team-a", "train-0"), "HOST": "127.0.0.1", "MASTER_ADDR": IP("team-a", "train-0"),
    }


def test_env_from_comes_first_skips_invalid_names_and_env_overrides_it():
    env = env_of(make_pod(
        env_from=[{"configMapRef": {"name": "settings"}}, {"secretRef": {"name": "creds"}, "prefix": "S_"}],
        env=[{"name": "mode", "value": "slow"}],
    ))
    assert env == {"greeting": "hello", "mode": "slow", "S_token": "s3cr3t", "S_AWS_ACCESS_KEY_ID": "minio"}


def test_optional_references_that_are_absent_are_skipped():
    env = env_of(make_pod(
        env_from=[{"secretRef": {"name": "nowhere", "optional": True}}],
        env=[{"name": "A", "valueFrom": {"secretKeyRef": {"name": "nowhere", "key": "k", "optional": True}}},
             {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k", "optional": True}}}],
    ))
    assert env == {}


@pytest.mark.parametrize(("var", "retry", "message"), [
    ({"secretKeyRef": {"name": "nowhere", "key": "k"}}, True, 'secret "nowhere" not found'),
    ({"configMapKeyRef": {"name": "settings", "key": "k"}}, True, "couldn't find key k in ConfigMap settings"),
    ({"fieldRef": {"fieldPath": "status.phase"}}, False, "'status.phase' is not supported"),
    ({"resourceFieldRef": {"resource": "limits.cpu"}}, False, "resourceFieldRef"),
])
def test_env_errors_say_what_is_missing_and_whether_to_retry(var, retry, message):
    with pytest.raises(ContainerConfigError, match=message) as raised:
        env_of(make_pod(env=[{"name": "X", "valueFrom": var}]))
    assert raised.value.retry is retry
    assert raised.value.reason == "CreateContainerConfigError"


def test_secret_data_is_decoded():
    assert secret_strings({"k": base64.b64encode("välue".encode()).decode()}) == {"k": "välue"}
    assert secret_strings(None) == {}


# -- argv --------------------------------------------------------------------------------------------

IMAGES = {"ghcr.io/acme/trainer": ["python", "-m", "dreambooth_trainer"], "ghcr.io/acme/trainer-gpu": ["/bin/true"]}


@pytest.mark.parametrize(("image", "command", "args", "expected"), [
    ("ghcr.io/acme/trainer:1.0", None, ["prior"], [str(VENV_BIN / "python"), "-m", "dreambooth_trainer", "prior"]),
    ("ghcr.io/acme/trainer-gpu:1.0", None, ["x"], ["/bin/true", "x"]),  # the longest prefix wins
    ("ghcr.io/acme/trainer:1.0", ["torchrun"], ["-m", "m", "--addr=$(ADDR)"],
     [str(VENV_BIN / "torchrun"), "-m", "m", f"--addr={IP('team-a', 'w-0')}"]),
    ("anything", ["sh", "-c", "echo $(ADDR)"], [], ["/usr/bin/sh", "-c", f"echo {IP('team-a', 'w-0')}"]),
])
def test_argv_is_command_or_image_entrypoint_plus_args(image, command, args, expected):
    pod = make_pod(image=image, command=command, args=args)
    search_path = [VENV_BIN, Path("/usr/bin")]
    argv = container_argv(pod, pod["spec"]["containers"][0], {"ADDR": "w-0.s.team-a.svc"}, IMAGES, search_path)
    assert argv == expected


@pytest.mark.parametrize(("image", "command", "reason"), [
    ("example.org/unknown:1", None, "ErrImageUnknown"),
    ("ghcr.io/acme/trainer:1", ["no-such-tool"], "StartError"),
])
def test_argv_errors_fail_the_pod(image, command, reason):
    pod = make_pod(image=image, command=command)
    with pytest.raises(ContainerConfigError) as raised:
        container_argv(pod, pod["spec"]["containers"][0], {}, IMAGES, [VENV_BIN])
    assert (raised.value.reason, raised.value.retry) == (reason, False)


# -- status ------------------------------------------------------------------------------------------

LOG = "\n".join(f"line {i}" for i in range(100))


@pytest.mark.parametrize(("written", "policy", "code", "expected"), [
    ("wrote 4 images", "FallbackToLogsOnError", 1, "wrote 4 images"),
    ("", "FallbackToLogsOnError", 1, "\n".join(f"line {i}" for i in range(80, 100))),
    ("", "FallbackToLogsOnError", 0, ""),
    ("", "File", 1, ""),
    ("x" * 5000, "File", 0, "x" * 4096),
])
def test_termination_message(written, policy, code, expected):
    assert termination_message(written, LOG, policy, code) == expected


@pytest.mark.parametrize(("metadata", "spec", "grace"), [
    ({"deletionGracePeriodSeconds": 5}, {"terminationGracePeriodSeconds": 60}, 5.0),  # as the deleter asked
    ({"deletionGracePeriodSeconds": 0}, {"terminationGracePeriodSeconds": 60}, 0.0),
    ({}, {"terminationGracePeriodSeconds": 60}, 60.0),
    ({}, {}, 30.0),
])
def test_deletion_grace_seconds(metadata, spec, grace):
    assert deletion_grace_seconds({"metadata": metadata, "spec": spec}) == grace


def record(state: dict, last: dict | None = None) -> ContainerRecord:
    return ContainerRecord("main", "img", state=state, last_state=last or {})


WAITING, RUNNING = {"waiting": {"reason": "ContainerCreating"}}, {"running": {}}
OK, ERR = {"terminated": {"exitCode": 0}}, {"terminated": {"exitCode": 3}}
BACKOFF = {"waiting": {"reason": "CrashLoopBackOff"}}


@pytest.mark.parametrize(("policy", "states", "deleting", "phase"), [
    ("Never", [WAITING], False, "Pending"),
    ("Never", [RUNNING, WAITING], False, "Pending"),
    ("Never", [RUNNING], False, "Running"),
    ("Never", [OK, RUNNING], False, "Running"),
    ("Never", [OK, OK], False, "Succeeded"),
    ("Never", [OK, ERR], False, "Failed"),
    ("OnFailure", [ERR], False, "Running"),  # it restarts
    ("OnFailure", [OK], False, "Succeeded"),
    ("Always", [OK], False, "Running"),
    ("OnFailure", [ERR], True, "Failed"),
    ("Always", [OK], True, "Succeeded"),
    ("Never", [WAITING], True, "Failed"),  # deleted before it started
])
def test_pod_phase(policy, states, deleting, phase):
    assert pod_phase(policy, [record(s) for s in states], deleting) == phase


def test_a_container_backing_off_keeps_an_on_failure_pod_running():
    assert pod_phase("OnFailure", [record(BACKOFF, last=ERR)]) == "Running"


@pytest.mark.parametrize(("returncode", "code"), [(0, 0), (3, 3), (-15, 143), (-9, 137)])
def test_exit_code_of_a_signalled_process_is_128_plus_the_signal(returncode, code):
    assert exit_code(returncode) == code


def test_container_record_moves_through_start_exit_and_restart():
    container = ContainerRecord("main", "img")
    container.started(42, "T1")
    container.exited(3, "ValueError", "T2")
    assert container.state == {"terminated": {"exitCode": 3, "reason": "Error", "message": "ValueError",
                                              "startedAt": "T1", "finishedAt": "T2", "containerID": "agent://42"}}
    container.restarting(1.0)
    assert container.restart_count == 1
    assert container.last_state["terminated"]["exitCode"] == 3
    assert container.state["waiting"]["reason"] == "CrashLoopBackOff"
    container.started(43, "T3")
    container.exited(0, "", "T4")
    assert container.state["terminated"]["reason"] == "Completed" and "message" not in container.state["terminated"]
    assert container.status()["restartCount"] == 1 and container.status()["lastState"]["terminated"]["exitCode"] == 3


def test_pod_status_reports_address_containers_and_keeps_transition_times():
    pod = make_pod(hostname="w-0")
    running = pod_status(pod, [record(RUNNING)], "T0", "T1")
    assert running["phase"] == "Running" and running["podIP"] == IP("team-a", "w-0")
    assert running["hostIP"] == "127.0.0.1" and running["startTime"] == "T0"
    ready = {c["type"]: (c["status"], c["lastTransitionTime"]) for c in running["conditions"]}
    assert ready["Ready"] == ("True", "T1")
    status = running["containerStatuses"][0]
    assert status["state"] == {"waiting": None, "running": {}, "terminated": None}  # a merge patch nulls the rest
    assert status["ready"] is True

    done = pod_status(pod, [record(OK)], "T0", "T2", previous=running)
    conditions = {c["type"]: (c["status"], c["lastTransitionTime"]) for c in done["conditions"]}
    assert done["phase"] == "Succeeded"
    assert conditions["Ready"] == ("False", "T2") and conditions["Initialized"] == ("True", "T1")


def test_fatal_errors_fail_the_pod_whatever_its_restart_policy():
    pod = make_pod()
    pod["spec"]["restartPolicy"] = "OnFailure"
    status = pod_status(pod, [record(WAITING)], "T0", "T1", fatal=("ErrImageUnknown", "image x is unknown"))
    assert (status["phase"], status["reason"], status["message"]) == ("Failed", "ErrImageUnknown", "image x is unknown")


def test_node_manifest_is_a_ready_gpu_node_not_managed_by_kwok():
    node = node_manifest("agent-0", 4, "T0")
    assert node["metadata"]["labels"]["dreambooth.dev/test-node"] == "agent"
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "agent-0"
    assert "annotations" not in node["metadata"] and "taints" not in node.get("spec", {})
    assert node["status"]["capacity"]["nvidia.com/gpu"] == node["status"]["allocatable"]["nvidia.com/gpu"] == "4"
    assert {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"] == "True"
