"""Least privilege, measured: the RBAC the chart gives the operator's ServiceAccount (default,
namespaced values, one tenant namespace) against the calls the operator really made in this
package's e2e, read from the apiserver's audit log (tests/support/controlplane.py AUDIT_POLICY).

Every permission granted must have been used, so one the code no longer needs fails here: drop
it from charts/dreambooth-operator/templates/_helpers.tpl, or exercise the path that needs it.
No call may have been refused. test_cloody_e2e.py runs the happy path; the test below drives, on
kwok pods, what it does not: suspend (deleting a Job), a trainer refusing its input (a failed
pod's termination message), a PriorityClass check, a storage Secret the job names itself (read
with get; the default one is watched) and ttlSecondsAfterFinished (deleting the job).
"""

from __future__ import annotations

import json

import pytest
import yaml
from dreambooth_api.files import PhaseReport
from dreambooth_api.names import EXIT_INVALID_INPUT, priors_job_name

from tests.support.audit import calls, granted
from tests.support.chart import can_i
from tests.support.pods import finish_pod, running_pods
from tests.support.wait import wait_for

from .conftest import BUCKET

SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
EDGES = "edges"
EDGES_SECRET = "edges-storage"
# What a ClusterRole must never hold in the default install: a ClusterRoleBinding would grant
# it in every namespace, kube-system included.
NAMESPACED = ("dreamboothjobs", "modelartifacts", "jobs", "pods", "pods/log", "services", "secrets", "events")


def get(cluster, kind: str, namespace: str, name: str) -> dict | None:
    out = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def phase(cluster, namespace: str, name: str, wanted: str) -> dict:
    return wait_for(lambda: ((s := (get(cluster, "dbj", namespace, name) or {}).get("status") or {})
                             .get("phase") == wanted and s), 180, f"{name} phase {wanted}")


def suspend(cluster, namespace: str, value: bool) -> None:
    cluster.kubectl("patch", "dbj", EDGES, "-n", namespace, "--type=merge",
                    "-p", json.dumps({"spec": {"suspend": value}}))


def edges_job(repo_root, priority_class: str) -> dict:
    """The cloody example on kwok nodes (the test plays its pods), at the lowest cost."""
    job = yaml.safe_load((repo_root / "examples/cloody-job.yaml").read_text())
    job["metadata"] = {"name": EDGES}
    spec = job["spec"]
    spec["baseModel"] = {"uri": f"s3://{BUCKET}/models/tiny-sd"}
    spec["prior"].update(numImages=2, shards=1)
    spec["resources"] = {"requests": {"cpu": "1", "memory": "1Gi"}, "nodeSelector": {"type": "kwok"},
                         "priorityClassName": priority_class}
    spec["output"] = {"artifactName": f"{EDGES}-lora"}
    spec["ttlSecondsAfterFinished"] = 10
    spec["storage"] = {"secretRef": {"name": EDGES_SECRET}}  # not the watched default: read with get
    return job


@pytest.fixture
def priority_class(cluster):
    name = "e2e-batch"
    cluster.kubectl("create", "priorityclass", name, "--value=1000", "--description=e2e jobs")
    yield name
    cluster.kubectl("delete", "priorityclass", name, check=False)


def test_operator_paths_beyond_the_happy_one_work_under_the_default_rbac(cluster, platform, repo_root,
                                                                         priority_class):
    ns, prior_job = platform.tenant, priors_job_name(EDGES)
    selector = f"batch.kubernetes.io/job-name={prior_job}"
    secret = get(cluster, "secret", ns, "dreambooth-storage")
    secret["metadata"] = {"name": EDGES_SECRET, "namespace": ns}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(secret))
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(edges_job(repo_root, priority_class)))
    pod = wait_for(lambda: (p := running_pods(cluster, ns, selector)) and p[0], 180, "a running prior pod")
    assert pod["spec"]["priorityClassName"] == priority_class and pod["spec"]["priority"] == 1000

    suspend(cluster, ns, True)  # the operator deletes the running prior Job
    phase(cluster, ns, EDGES, "Suspended")
    wait_for(lambda: get(cluster, "job", ns, prior_job) is None, what=f"Job {prior_job} deleted")
    wait_for(lambda: not json.loads(cluster.kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json")
                                    .stdout)["items"], what=f"the pods of {prior_job} gone")
    suspend(cluster, ns, False)
    pod = wait_for(lambda: (p := running_pods(cluster, ns, selector)) and p[0], 180, "a new running prior pod")

    report = PhaseReport(phase="prior", status="Failed", rank=0, reason="ClassPromptRefused",
                         message="prior.classPrompt is refused by the e2e")
    finish_pod(cluster, ns, pod, exit_code=EXIT_INVALID_INPUT, message=report.dumps().decode())
    failed = phase(cluster, ns, EDGES, "Failed")
    condition = next(c for c in failed["conditions"] if c["type"] == "Failed")
    assert condition["reason"] == "ClassPromptRefused", condition  # read from the pod's termination message
    wait_for(lambda: get(cluster, "dbj", ns, EDGES) is None, 60, "the job deleted after ttlSecondsAfterFinished")
    platform.exercised.add("edges")


def test_default_rbac_reaches_no_system_namespace(cluster, platform):
    user, tenant = platform.installed.user, platform.tenant
    assert can_i(cluster, user, "create", "jobs.batch", tenant)
    for namespace in (*SYSTEM_NAMESPACES, platform.installed.namespace):
        for verb, resource in (("create", "jobs.batch"), ("get", "secrets"), ("list", "pods")):
            assert not can_i(cluster, user, verb, resource, namespace), (verb, resource, namespace)
    assert not [p for p in granted(cluster, platform.installed.namespace, platform.installed.service_account)
                if p.namespace in SYSTEM_NAMESPACES or (p.namespace is None and p.resource in NAMESPACED)]



def test_every_permission_was_used_and_no_call_refused(cluster, platform):
    if platform.exercised != {"cloody", "edges"}:
        pytest.skip(f"needs the whole e2e package in this session; ran: {sorted(platform.exercised)}")
    installed = platform.installed
    made = calls(cluster.audit_log, installed.user)
    assert made, f"no call of {installed.user} in {cluster.audit_log}"
    refused = sorted(str(c) for c in made if c.code == 403)
    assert not refused, f"the apiserver refused the operator: {refused}"
    unused = sorted(str(p) for p in granted(cluster, installed.namespace, installed.service_account)
                    if not any(p.covers(c) for c in made))
    assert not unused, (f"granted but never used by the operator in the e2e: {unused}; "
                        f"used: {sorted({str(c) for c in made})}")
