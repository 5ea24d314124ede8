"""What jobs share on the platform, on the real apiserver, MinIO and Prometheus: class images made
once (the content-addressed prior cache), identical jobs answered by an existing artifact, and
the GPU time of every pod counted per namespace and phase."""

from __future__ import annotations

import datetime
import json

from dreambooth_api import names
from dreambooth_api.files import PriorSettings
from dreambooth_api.priorcache import settings_digest

from tests.support.pods import running_pods
from tests.support.wait import wait_for

from .conftest import small_job
from .play import (
    finish_job_pods,
    get,
    put,
    put_artifact,
    put_priors,
    put_progress,
    trainer_config,
    wait_phase,
)

GPU = "nvidia.com/gpu"


def apply(cluster, namespace: str, job: dict) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(job))


def child_jobs(cluster, namespace: str) -> list[str]:
    out = cluster.kubectl("get", "jobs", "-n", namespace, "-o", "json")
    return sorted(j["metadata"]["name"] for j in json.loads(out.stdout)["items"])


def events(cluster, namespace: str, name: str) -> dict[str, str]:
    out = cluster.kubectl("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}",
                          "-o", "json")
    return {e["reason"]: e["message"] for e in json.loads(out.stdout)["items"]}


def condition(status: dict, type_: str) -> tuple[str, str, str]:
    found = next(c for c in status["conditions"] if c["type"] == type_)
    return found["status"], found["reason"], found["message"]


def priors(cluster, storage, namespace: str, name: str, shards: int) -> list[int]:
    """Play the prior Job: the class images the cache lacks. Returns the indices made."""
    job = wait_for(lambda: get(cluster, "job", namespace, f"{name}-priors"), what=f"prior Job of {name}")
    made = put_priors(storage, trainer_config(job))
    finish_job_pods(cluster, namespace, f"{name}-priors", shards)
    return made


def train_and_publish(cluster, storage, namespace: str, name: str, workers: int = 2, run_for: float = 0) -> dict:
    """Play training (its pods running at least ``run_for`` seconds), then publishing."""
    train = wait_for(lambda: get(cluster, "job", namespace, f"{name}-train-0"), what=f"training Job of {name}")
    config = trainer_config(train)
    selector = f"batch.kubernetes.io/job-name={name}-train-0"
    wait_for(lambda: len(pods := running_pods(cluster, namespace, selector)) == workers and all(
        ran(p) >= run_for for p in pods), 120, f"{workers} training pods of {name} running for {run_for:g}s")
    put_progress(storage, config, config.training.max_steps, loss=0.2)
    finish_job_pods(cluster, namespace, f"{name}-train-0", workers)
    publish = wait_for(lambda: get(cluster, "job", namespace, f"{name}-publish"), what=f"publish Job of {name}")
    put_artifact(storage, trainer_config(publish))
    finish_job_pods(cluster, namespace, f"{name}-publish", 1)
    return wait_phase(cluster, namespace, name, "Succeeded")


def ran(pod: dict) -> float:
    """Seconds since the pod's container started (its GPU time so far)."""
    (state,) = [c["state"]["running"] for c in pod["status"]["containerStatuses"]]
    return (datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - parse(state["startedAt"])).total_seconds()


def pods_gpu_seconds(cluster, namespace: str) -> dict[str, float]:
    """GPUs × run time of every pod in the namespace, from the pods' own statuses, by phase."""
    phase_of = {names.PRIORS: "priors", names.TRAIN: "training", names.PUBLISH: "publish"}
    out = cluster.kubectl("get", "pods", "-n", namespace, "-o", "json")
    totals: dict[str, float] = {}
    for pod in json.loads(out.stdout)["items"]:
        (state,) = [s["state"]["terminated"] for s in pod["status"]["containerStatuses"]]
        seconds = (parse(state["finishedAt"]) - parse(state["startedAt"])).total_seconds()
        gpus = int(pod["spec"]["containers"][0]["resources"]["requests"][GPU])
        phase = phase_of[pod["metadata"]["labels"][names.COMPONENT_LABEL]]
        totals[phase] = totals.get(phase, 0.0) + gpus * seconds
    return totals


def parse(ts: str) -> datetime.datetime:
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ")


def exported(prometheus, namespace: str) -> dict[str, float]:
    series = prometheus.query(f'dreambooth_gpu_seconds_total{{namespace="{namespace}"}}')
    return {s["metric"]["phase"]: float(s["value"][1]) for s in series}


def test_class_images_are_made_once_and_identical_jobs_reuse_the_artifact(cluster, operator, tenant, storage,
                                                                          repo_root, prometheus):
    ns = tenant
    prometheus.add_target(f"127.0.0.1:{operator.metrics_port}", suite="sharing")
    # The first job makes its 4 class images into the namespace's cache and trains.
    apply(cluster, ns, small_job(repo_root, "first"))
    assert priors(cluster, storage, ns, "first", 2) == [0, 2, 1, 3]
    first = train_and_publish(cluster, storage, ns, "first", run_for=10)
    assert first["priors"] == {"ready": 4, "total": 4, "cached": 0}

    # Another subject with the same class settings: no prior Job, its priors cost no GPU.
    apply(cluster, ns, small_job(repo_root, "second", **{"instance.prompt": "a photo of zwx cat"}))
    status = wait_phase(cluster, ns, "second", "Training")
    assert status["priors"] == {"ready": 4, "total": 4, "cached": 4}
    assert condition(status, "PriorsReady")[:2] == ("True", "PriorsCached")
    second = train_and_publish(cluster, storage, ns, "second")
    assert "second-priors" not in child_jobs(cluster, ns)
    assert second["accounting"]["priorsGpuSeconds"] == 0

    # GPU time: the operator's series, scraped by Prometheus, is the pods' own run time. Pod
    # times have whole-second resolution: 1 s per pod and GPU either way.
    pods = pods_gpu_seconds(cluster, ns)
    tolerance = {"priors": 2 * 1, "training": 4 * 1, "publish": 2 * 1}
    series = wait_for(lambda: (e := exported(prometheus, ns)) and set(e) == set(pods)
                      and all(abs(e[p] - pods[p]) <= tolerance[p] for p in pods) and e,
                      what=lambda: f"dreambooth_gpu_seconds_total of {ns} {exported(prometheus, ns)} "
                                   f"to match the pods' {pods}")
    assert series["priors"] == first["accounting"]["priorsGpuSeconds"]  # the second job added none
    assert series["training"] >= 2 * 10  # two 1-GPU workers of the first job ran 10 s each at least
    artifact = get(cluster, "modelartifact", ns, "first-lora")
    assert artifact["spec"]["gpuSeconds"] == sum(first["accounting"][f] for f in (
        "priorsGpuSeconds", "trainingGpuSeconds", "publishGpuSeconds"))
    assert artifact["spec"]["inputsDigest"] == first["inputsDigest"]

    # The same cloody job again, under another name: succeeded at once, without any pod.
    apply(cluster, ns, small_job(repo_root, "again", **{"output.artifactName": "again-lora"}))
    again = wait_phase(cluster, ns, "again", "Succeeded")
    assert again["artifact"] == "first-lora" and again["inputsDigest"] == first["inputsDigest"]
    assert condition(again, "Complete")[:2] == ("True", "ReusedArtifact")
    assert "first-lora" in events(cluster, ns, "again")["ReusedArtifact"]
    assert not [j for j in child_jobs(cluster, ns) if j.startswith("again-")]
    assert get(cluster, "modelartifact", ns, "again-lora") is None

    # One hyperparameter changed: a different adapter, so it trains (on the cached priors).
    apply(cluster, ns, small_job(repo_root, "tuned", **{"training.learningRate": 2e-4}))
    tuned = wait_phase(cluster, ns, "tuned", "Training")
    assert tuned["inputsDigest"] != first["inputsDigest"]
    assert wait_for(lambda: get(cluster, "job", ns, "tuned-train-0"), what="training Job of tuned")


def test_a_partial_hit_generates_only_the_missing_and_a_corrupt_image_is_made_again(cluster, operator, tenant,
                                                                                   storage, repo_root):
    ns = tenant
    apply(cluster, ns, small_job(repo_root, "eight", **{"prior.numImages": 8}))
    assert sorted(priors(cluster, storage, ns, "eight", 2)) == list(range(8))
    wait_phase(cluster, ns, "eight", "Training")

    # 12 images wanted, 8 cached: the prior Job makes exactly the other 4.
    apply(cluster, ns, small_job(repo_root, "twelve",
                                 **{"prior.numImages": 12, "instance.prompt": "a photo of zwx cat"}))
    made = priors(cluster, storage, ns, "twelve", 2)
    assert sorted(made) == [8, 9, 10, 11]
    status = wait_phase(cluster, ns, "twelve", "Training")
    assert status["priors"] == {"ready": 12, "total": 12, "cached": 8}

    # A cached image overwritten with other bytes: detected, said, and made again.
    config = trainer_config(get(cluster, "job", ns, "twelve-priors"))
    assert config.priors_uri.endswith(f"/prior-cache/{settings_digest(PriorSettings.for_job(config))}/")
    put(storage, config.priors_uri + names.prior_image_name(3), b"\x89PNG not the image its entry names")
    apply(cluster, ns, small_job(repo_root, "third",
                                 **{"prior.numImages": 8, "instance.prompt": "a photo of qrs cat"}))
    status = wait_for(lambda: (s := get(cluster, "dreamboothjob", ns, "third").get("status") or {})
                      .get("priors", {}).get("cached") is not None and s, what="the prior cache counted for third")
    assert status["priors"]["cached"] == 7
    files_valid = condition(status, "FilesValid")
    assert files_valid[:2] == ("False", "PriorCacheCorrupt") and "class-000003.png" in files_valid[2]
    assert priors(cluster, storage, ns, "third", 2) == [3]
    status = wait_phase(cluster, ns, "third", "Training")
    assert condition(status, "FilesValid")[:2] == ("True", "FilesValid")
