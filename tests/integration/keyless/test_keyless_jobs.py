"""The operator in keyless mode, as the chart runs it: its own storage token (no Secret anywhere),
jobs confined to their namespace's prefix, refusals named before anything is read.

Pods run on kwok nodes; the tests play the trainer, writing with the tenant's own STS
credentials (the pods' path), while the operator reads with its token's credentials.
"""

from __future__ import annotations

import json
import uuid

import pytest
from dreambooth_api.keyless import DEFAULT_AUDIENCE, DEFAULT_WORKLOAD_SERVICE_ACCOUNT, tenant_prefix

from tests.integration.keyless.tenancy import token_client
from tests.integration.operator import play
from tests.integration.operator.conftest import TRAINER_IMAGE, small_job
from tests.support.chart import install_operator
from tests.support.datasets import CLOODY_PREFIX, upload_tree
from tests.support.operator_process import OperatorProcess
from tests.support.sts import KEYLESS_BUCKET, OPERATOR_SUBJECT, TokenFile, request_token
from tests.support.wait import wait_for

OPERATOR_NAMESPACE, OPERATOR_ACCOUNT = OPERATOR_SUBJECT.split(":")[2:]


@pytest.fixture(scope="module")
def keyless_operator(cluster, dreambooth_crds, sts_minio, session_dir, tmp_path_factory):
    """The chart installed in keyless mode (a release of its own, cluster-wide RBAC) and the
    operator process with its settings; its storage token is written as the kubelet would."""
    installed = install_operator(cluster, {
        "rbac.clusterWide": "true",
        "serviceAccount.name": OPERATOR_ACCOUNT,  # the subject MinIO's role policy names
        "trainer.image.repository": TRAINER_IMAGE.split(":")[0],
        "trainer.image.tag": TRAINER_IMAGE.split(":")[1],
        "storage.mode": "keyless",
        "storage.endpoint": sts_minio.endpoint,
        "storage.secure": "false",
        "storage.bucket": KEYLESS_BUCKET,
        "storage.keyless.roleArn": sts_minio.role_arn,
    }, release="dbk", namespace=OPERATOR_NAMESPACE)
    token = tmp_path_factory.mktemp("operator-token") / "token"
    source = TokenFile(token, lambda: (request_token(cluster, OPERATOR_NAMESPACE, OPERATOR_ACCOUNT,
                                                     DEFAULT_AUDIENCE), 600)).start()
    process = OperatorProcess(session_dir / "keyless-operator", installed.kubeconfig, {
        **installed.env,
        "DREAMBOOTH_STORAGE_TOKEN_FILE": str(token),
        "DREAMBOOTH_PROGRESS_INTERVAL_SECONDS": "1",
    }).start()
    yield process
    process.stop()
    source.stop()


def tenant_namespace(cluster, onboarded: bool = True) -> str:
    namespace = f"kl-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", namespace)
    if onboarded:
        cluster.kubectl("create", "serviceaccount", DEFAULT_WORKLOAD_SERVICE_ACCOUNT, "-n", namespace)
    return namespace


def photos_uri(namespace: str) -> str:
    return f"s3://{KEYLESS_BUCKET}/{tenant_prefix(namespace)}/{CLOODY_PREFIX}/"


def upload_photos(sts_minio, repo_root, namespace: str) -> None:
    upload_tree(sts_minio.client(), KEYLESS_BUCKET, repo_root / "examples/data/cloody-cat",
                f"{tenant_prefix(namespace)}/{CLOODY_PREFIX}")


def apply(cluster, namespace: str, job: dict) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(job))


def validated(cluster, namespace: str, name: str) -> dict:
    conditions = play.job_status(cluster, namespace, name).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Validated"), {})


def await_refusal(cluster, namespace: str, name: str, reason: str) -> dict:
    return wait_for(lambda: (c := validated(cluster, namespace, name)).get("reason") == reason and c,
                    120, lambda: f"Validated=False/{reason} on {namespace}/{name}; status: "
                                 f"{play.job_status(cluster, namespace, name)}")


def warnings(cluster, namespace: str, reason: str) -> list[dict]:
    events = json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    return [e for e in events if e["reason"] == reason and e["type"] == "Warning"]


def child_jobs(cluster, namespace: str) -> list[str]:
    return cluster.kubectl("get", "jobs", "-n", namespace, "-o", "name").stdout.split()


def test_a_job_reaching_into_another_tenants_prefix_is_refused_and_reads_nothing(
        cluster, keyless_operator, sts_minio, repo_root):
    thief, victim = tenant_namespace(cluster), tenant_namespace(cluster)
    upload_photos(sts_minio, repo_root, victim)
    job = small_job(repo_root, "reach", **{"instance.dataUri": photos_uri(victim), "baseModel.uri": "hf://org/sd15"})
    apply(cluster, thief, job)
    condition = await_refusal(cluster, thief, "reach", "InstanceDataOutsideTenant")
    assert condition["status"] == "False" and photos_uri(victim) in condition["message"]
    assert tenant_prefix(thief) in condition["message"]
    wait_for(lambda: len(warnings(cluster, thief, "InstanceDataOutsideTenant")) == 1, 60,
             "one Warning Event InstanceDataOutsideTenant")
    assert child_jobs(cluster, thief) == []
    # Nothing under the victim's prefix was touched by anyone but the test's own upload (root).
    touched = [r for r in sts_minio.audit_log() if tenant_prefix(victim) in r.key and r.subject]
    assert touched == [], touched
    assert play.job_status(cluster, thief, "reach").get("phase") == "Pending"


def test_a_namespace_is_refused_until_it_is_onboarded(cluster, keyless_operator, sts_minio, repo_root):
    namespace = tenant_namespace(cluster, onboarded=False)
    upload_photos(sts_minio, repo_root, namespace)
    job = small_job(repo_root, "early", **{"instance.dataUri": photos_uri(namespace), "baseModel.uri": "hf://org/sd15"})
    apply(cluster, namespace, job)
    condition = await_refusal(cluster, namespace, "early", "TenantNotOnboarded")
    assert DEFAULT_WORKLOAD_SERVICE_ACCOUNT in condition["message"] and namespace in condition["message"]
    assert child_jobs(cluster, namespace) == []
    # Onboarding is one step; the waiting job is re-checked (every 30 s) and starts.
    cluster.kubectl("create", "serviceaccount", DEFAULT_WORKLOAD_SERVICE_ACCOUNT, "-n", namespace)
    wait_for(lambda: validated(cluster, namespace, "early").get("status") == "True", 180,
             lambda: f"Validated=True after onboarding; status: {play.job_status(cluster, namespace, 'early')}")
    assert len(warnings(cluster, namespace, "TenantNotOnboarded")) == 1


@pytest.mark.parametrize(("override", "reason"), [
    ({"baseModel.uri": "s3://dreambooth-keyless/tenants/system:serviceaccount:else:dreambooth-workload/m"},
     "BaseModelOutsideTenant"),
    ({"storage": {"secretRef": {"name": "dreambooth-storage"}}}, "StorageSecretNotAllowed"),
    ({"storage": {"bucket": "dreambooth"}}, "StorageOutsideTenant"),
])
def test_other_ways_out_are_refused_by_name(cluster, keyless_operator, sts_minio, repo_root, override, reason):
    namespace = tenant_namespace(cluster)
    upload_photos(sts_minio, repo_root, namespace)
    job = small_job(repo_root, "out", **{"instance.dataUri": photos_uri(namespace), "baseModel.uri": "hf://org/sd15",
                                        **override})
    apply(cluster, namespace, job)
    await_refusal(cluster, namespace, "out", reason)
    assert child_jobs(cluster, namespace) == []


def test_a_job_in_its_own_prefix_runs_with_tokens_and_no_key(cluster, keyless_operator, sts_minio, repo_root,
                                                              tmp_path):
    namespace = tenant_namespace(cluster)
    upload_photos(sts_minio, repo_root, namespace)
    job = small_job(repo_root, "own", **{"instance.dataUri": photos_uri(namespace), "baseModel.uri": "hf://org/sd15"})
    apply(cluster, namespace, job)
    priors = wait_for(lambda: play.get(cluster, "job", namespace, "own-priors"), 120,
                      lambda: f"the prior Job of own; status: {play.job_status(cluster, namespace, 'own')}")
    pod = priors["spec"]["template"]["spec"]
    container = play.trainer_container(pod)
    assert pod["serviceAccountName"] == DEFAULT_WORKLOAD_SERVICE_ACCOUNT
    (volume,) = [v for v in pod["volumes"] if "projected" in v]
    assert volume["projected"]["sources"][0]["serviceAccountToken"]["audience"] == DEFAULT_AUDIENCE
    env = {e["name"]: e for e in container["env"]}
    assert env["AWS_WEB_IDENTITY_TOKEN_FILE"]["value"].startswith("/var/run/secrets/")
    assert "AWS_ACCESS_KEY_ID" not in env and not [e for e in container["env"] if "secretKeyRef" in str(e)]
    config = play.trainer_config(priors)
    assert config.priors_uri.startswith(f"s3://{KEYLESS_BUCKET}/{tenant_prefix(namespace)}/prior-cache/")

    # The trainer's part, with the tenant's own credentials (its workload token at STS).
    source, tenant = token_client(cluster, sts_minio, tmp_path, namespace, DEFAULT_WORKLOAD_SERVICE_ACCOUNT)
    try:
        play.put_priors(tenant, config)
        play.finish_job_pods(cluster, namespace, "own-priors", config.prior.shards)
        train = wait_for(lambda: play.get(cluster, "job", namespace, "own-train-0"), 120, "the training Job of own")
        play.put_progress(tenant, play.trainer_config(train), step=3, loss=0.25)
    finally:
        source.stop()
    # The operator read it with its own token's credentials.
    training = wait_for(lambda: (t := play.job_status(cluster, namespace, "own").get("training") or {})
                        .get("step") == 3 and t, 120, "status.training.step 3 from progress.json")
    assert training["loss"] == pytest.approx(0.25)
    assert json.loads(cluster.kubectl("get", "secrets", "-n", namespace, "-o", "json").stdout)["items"] == []
