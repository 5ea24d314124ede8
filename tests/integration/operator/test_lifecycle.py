"""A DreamBoothJob through every phase, with the operator as the chart's ServiceAccount."""

from __future__ import annotations

import json
import subprocess

from dreambooth_api.files import PriorSettings
from dreambooth_api.priorcache import settings_digest

from tests.support.wait import wait_for

from .conftest import TRAINER_IMAGE, small_job
from .play import (
    checkpoint_uri,
    finish_job_pods,
    get,
    put_artifact,
    put_priors,
    put_progress,
    trainer_config,
    wait_phase,
)

GPU = "nvidia.com/gpu"


def apply(cluster, namespace: str, job: dict) -> dict:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(job))
    return get(cluster, "dreamboothjob", namespace, job["metadata"]["name"])


def assert_owned_by(child: dict, job: dict) -> None:
    (ref,) = child["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("DreamBoothJob", job["metadata"]["uid"], True)


def assert_no_literal_secret(obj: dict, minio) -> None:
    text = json.dumps(obj)
    assert minio.secret_key not in text and minio.access_key not in text


def events(cluster, namespace: str, name: str) -> list[str]:
    items = json.loads(cluster.kubectl("get", "events", "-n", namespace, "--field-selector",
                                       f"involvedObject.name={name}", "-o", "json").stdout)["items"]
    return [e["reason"] for e in items]


def test_job_goes_through_every_phase_to_a_model_artifact(cluster, operator, tenant, storage, minio, repo_root,
                                                         prometheus):
    ns = tenant
    job = apply(cluster, ns, small_job(repo_root, "cloody"))

    # Priors: an Indexed Job, one GPU per shard, credentials only by reference.
    priors = wait_for(lambda: get(cluster, "job", ns, "cloody-priors"), what="prior Job")
    assert_owned_by(priors, job)
    assert_no_literal_secret(priors, minio)
    spec = priors["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    container = spec["template"]["spec"]["containers"][0]
    assert container["image"] == TRAINER_IMAGE and container["args"] == ["prior"]
    assert container["resources"]["limits"][GPU] == "1"
    keys = {e["name"]: e for e in container["env"]}
    assert keys["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "dreambooth-storage", "key": "AWS_SECRET_ACCESS_KEY"}
    config = trainer_config(priors)
    uid = job["metadata"]["uid"]
    # Class images go to the namespace's prior cache, in the directory of their settings' digest.
    digest = settings_digest(PriorSettings.for_job(config))
    assert config.priors_uri == f"s3://dreambooth/{ns}/prior-cache/{digest}/"
    assert config.prior.num_images == 4 and config.prior.class_prompt == "a photo of a cat"
    status = wait_phase(cluster, ns, "cloody", "GeneratingPriors")
    assert status["priors"] == {"ready": 0, "total": 4, "cached": 0}

    put_priors(storage, config)
    finish_job_pods(cluster, ns, "cloody-priors", 2)

    # Training: W workers rendezvous through a headless Service.
    status = wait_phase(cluster, ns, "cloody", "Training")
    assert status["priors"] == {"ready": 4, "total": 4, "cached": 0}
    service = wait_for(lambda: get(cluster, "service", ns, "cloody-train"), what="rendezvous Service")
    assert service["spec"]["clusterIP"] == "None"
    assert_owned_by(service, job)
    train = wait_for(lambda: get(cluster, "job", ns, "cloody-train-0"), what="training Job")
    assert_owned_by(train, job)
    assert (train["spec"]["completions"], train["spec"]["parallelism"], train["spec"]["backoffLimit"]) == (2, 2, 0)
    pod_spec = train["spec"]["template"]["spec"]
    assert pod_spec["subdomain"] == "cloody-train"
    container = pod_spec["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert "command" not in container and container["args"] == ["train"]  # its launcher runs torchrun
    assert (env["PET_NNODES"], env["PET_NPROC_PER_NODE"], env["WORLD_SIZE"]) == ("2", "1", "2")
    assert env["MASTER_ADDR"] == f"cloody-train-0-0.cloody-train.{ns}.svc"
    config = trainer_config(train)
    put_progress(storage, config, 5, loss=0.25, images_per_second=3.5, steps_per_second=0.5,
                 last_checkpoint=checkpoint_uri(config, 5))
    status = wait_for(lambda: (s := get(cluster, "dreamboothjob", ns, "cloody")["status"])
                      .get("training", {}).get("loss") == 0.25 and s, what="training progress in status")
    assert status["progress"] == "5/10"
    assert status["training"]["etaSeconds"] == 10
    assert status["training"]["lastCheckpoint"] == checkpoint_uri(config, 5)
    finish_job_pods(cluster, ns, "cloody-train-0", 2)

    # Publishing, then the artifact, which the job does not own.
    wait_phase(cluster, ns, "cloody", "Publishing")
    publish = wait_for(lambda: get(cluster, "job", ns, "cloody-publish"), what="publish Job")
    assert trainer_config(publish).result_uri == f"s3://dreambooth/{ns}/jobs/{uid}/result.json"
    result = put_artifact(storage, trainer_config(publish))
    finish_job_pods(cluster, ns, "cloody-publish", 1)
    status = wait_phase(cluster, ns, "cloody", "Succeeded")
    assert status["artifact"] == "cloody-lora"
    assert status["completionTime"] >= status["startTime"]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Complete"] == "True"
    artifact = get(cluster, "modelartifact", ns, "cloody-lora")
    assert "ownerReferences" not in artifact["metadata"]
    assert artifact["spec"]["sha256"] == result.sha256
    assert artifact["spec"]["uri"] == result.adapter_uri
    assert artifact["spec"]["sourceJob"] == {"name": "cloody", "uid": uid}
    assert artifact["spec"]["prompts"] == {"instance": "a photo of sks cat", "class": "a photo of a cat"}
    reasons = events(cluster, ns, "cloody")
    for phase in ("GeneratingPriors", "Training", "Publishing", "Succeeded"):
        assert phase in reasons
    table = cluster.kubectl("get", "dbj", "cloody", "-n", ns).stdout
    assert "Succeeded" in table and "10/10" in table and "cloody-lora" in table

    # The operator's metrics reach Prometheus and pass promtool.
    prometheus.add_target(f"127.0.0.1:{operator.metrics_port}", component="operator")
    prometheus.wait_for(f'dreambooth_operator_jobs{{namespace="{ns}",phase="Succeeded"}} == 1')
    created = prometheus.wait_for(f'dreambooth_operator_children_created_total{{namespace="{ns}",kind="Job"}}')
    assert float(created[0]["value"][1]) == 3  # priors, train-0, publish
    prometheus.wait_for('dreambooth_operator_phase_duration_seconds_count{phase="Training"} >= 1')
    check = subprocess.run(["promtool", "check", "metrics"], input=operator.metrics(), capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
