"""Every pod the operator creates, and the operator's own, passes Pod Security `restricted`.

Each pod template is created as a Pod, with server-side dry run, in a namespace that enforces
`restricted` on the real apiserver: the PodSecurity admission plugin judges it exactly as it
would judge the pods the Job controller creates (it enforces on Pods, not on Jobs).
"""

from __future__ import annotations

import copy
import json
import uuid

import pytest
from dreambooth_api import DreamBoothJobSpec
from dreambooth_operator import children
from dreambooth_operator.settings import OperatorSettings

from tests.chart.helmchart import FULLNAME, Helm, one
from tests.support.wait import wait_for

from .conftest import small_job

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted",
              "pod-security.kubernetes.io/enforce-version": "latest"}
TRAINER_ACCOUNT = "dreambooth-trainer"
SCHEDULING = {
    "resources.nodeSelector": {"nvidia.com/gpu.product": "H100"},
    "resources.tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
}
BUILDERS = {
    "prior": children.build_prior_job,
    "training": lambda ctx: children.build_training_job(ctx, 1),
    "publish": children.build_publish_job,
}


@pytest.fixture(scope="module")
def restricted(cluster):
    """A namespace enforcing `restricted`, with what Pod admission looks up besides: its
    ServiceAccounts and a PriorityClass (the ServiceAccount and Priority plugins refuse a pod
    naming one that does not exist)."""
    name, priority_class = f"pss-{uuid.uuid4().hex[:10]}", f"pss-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, *(f"{key}={value}" for key, value in RESTRICTED.items()))
    cluster.kubectl("create", "priorityclass", priority_class, "--value=1000")
    for account in (TRAINER_ACCOUNT, FULLNAME):
        cluster.kubectl("create", "serviceaccount", account, "-n", name)
    wait_for(lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
             what=f"the default ServiceAccount of {name}")
    yield name, priority_class
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
    cluster.kubectl("delete", "priorityclass", priority_class, "--wait=false", check=False)


def as_pod(template: dict, name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": template["metadata"].get("labels") or {}},
            "spec": copy.deepcopy(template["spec"])}


def dry_run_create(cluster, namespace: str, pod: dict):
    return cluster.kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(pod),
                           check=False)


def assert_admitted(cluster, namespace: str, pod: dict) -> None:
    created = dry_run_create(cluster, namespace, pod)
    assert created.returncode == 0, f"{pod['metadata']['name']} refused in a restricted namespace:\n{created.stderr}"


def child_pod(repo_root, namespace: str, builder: str, settings: OperatorSettings | None = None,
              **overrides) -> dict:
    spec = DreamBoothJobSpec.model_validate(small_job(repo_root, "pss", **overrides)["spec"])
    ctx = children.JobContext.create("pss", namespace, "uid-pss", spec,
                                     settings or OperatorSettings(trainer_image="registry.test/trainer:1"))
    job = BUILDERS[builder](ctx)
    return as_pod(job["spec"]["template"], f"{job['metadata']['name']}-0")


@pytest.mark.parametrize("builder", BUILDERS)
def test_child_pods_are_admitted(cluster, restricted, repo_root, builder):
    namespace, _ = restricted
    pod = child_pod(repo_root, namespace, builder, **{"distributed.workers": 2, "distributed.gpusPerWorker": 2})
    assert_admitted(cluster, namespace, pod)


@pytest.mark.parametrize("builder", BUILDERS)
def test_child_pods_with_scheduling_and_a_service_account_are_admitted(cluster, restricted, repo_root, builder):
    namespace, priority_class = restricted
    settings = OperatorSettings(trainer_image="registry.test/trainer:1", trainer_service_account=TRAINER_ACCOUNT)
    pod = child_pod(repo_root, namespace, builder, settings,
                    **SCHEDULING, **{"resources.priorityClassName": priority_class})
    assert pod["spec"]["priorityClassName"] == priority_class and pod["spec"]["tolerations"]
    assert_admitted(cluster, namespace, pod)


def test_operator_pod_from_the_chart_is_admitted(cluster, restricted, helm, tmp_path):
    namespace, _ = restricted
    deployment = one(Helm(helm, tmp_path).render(), "Deployment")
    assert_admitted(cluster, namespace, as_pod(deployment["spec"]["template"], "operator"))


def test_the_namespace_really_enforces_restricted(cluster, restricted, repo_root):
    """The negative control: the same prior pod without its seccompProfile is refused."""
    namespace, _ = restricted
    pod = child_pod(repo_root, namespace, "prior")
    del pod["spec"]["securityContext"]["seccompProfile"]
    refused = dry_run_create(cluster, namespace, pod)
    assert refused.returncode != 0, "a pod without seccompProfile was admitted: the namespace does not enforce"
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr, refused.stderr
    assert "seccompProfile" in refused.stderr, refused.stderr
