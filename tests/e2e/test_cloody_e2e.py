"""The cloody job end to end on real parts: kubectl apply → priors on 2 pods → DDP training on
2 pods → publish → a ModelArtifact whose adapter loads in diffusers; metrics in Prometheus.

Pods really run, as local processes of the test node agent, with the real trainer code."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from urllib.parse import urlparse

from dreambooth_api import names
from dreambooth_api.files import ArtifactMetadata

from tests.support.wait import wait_for

from .conftest import BUCKET, TRAINER_IMAGE


def status(cluster, namespace: str) -> dict:
    out = cluster.kubectl("get", "dbj", "cloody", "-n", namespace, "-o", "json", check=False)
    return json.loads(out.stdout).get("status") or {} if out.returncode == 0 else {}


def test_cloody_job_runs_end_to_end(cluster, minio, prometheus, platform, repo_root, tmp_path):
    operator, agent, namespace = platform.operator, platform.agent, platform.tenant
    prometheus.add_target(f"127.0.0.1:{operator.metrics_port}", component="operator")

    # The user's YAML, with a kustomize overlay: the same schema, not a special test kind.
    shutil.copy(repo_root / "examples/cloody-job.yaml", tmp_path / "cloody-job.yaml")
    shutil.copy(repo_root / "tests/e2e/cloody-tiny-patch.yaml", tmp_path / "patch.yaml")
    (tmp_path / "kustomization.yaml").write_text(
        f"namespace: {namespace}\nresources: [cloody-job.yaml]\npatches: [{{path: patch.yaml}}]\n")
    cluster.kubectl("apply", "-k", str(tmp_path))

    seen_phases: list[str] = []
    targets: set[str] = set()

    def progress() -> dict | None:
        current = status(cluster, namespace)
        phase = current.get("phase")
        if phase and (not seen_phases or seen_phases[-1] != phase):
            seen_phases.append(phase)
        # Scrape every trainer pod as a PodMonitor would.
        pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l",
                                          "dreambooth.dev/job-name=cloody", "-o", "json").stdout)["items"]
        for pod in pods:
            ip = (pod.get("status") or {}).get("podIP")
            if ip and pod["status"].get("phase") == "Running" and ip not in targets:
                targets.add(ip)
                prometheus.add_target(f"{ip}:9400", namespace=namespace, pod=pod["metadata"]["name"])
        if phase == "Failed":
            raise AssertionError(f"job failed: {current}\n" + "\n".join(
                agent.logs(namespace, p["metadata"]["name"])[-3000:] for p in pods))
        return current if phase == "Succeeded" else None

    final = wait_for(progress, 900, "cloody Succeeded", interval=0.5)  # generous: 2 shared cores
    assert seen_phases[0] in ("Pending", "GeneratingPriors")
    for phase in ("GeneratingPriors", "Training", "Publishing", "Succeeded"):
        assert phase in seen_phases, seen_phases
    assert final["priors"] == {"ready": 4, "total": 4, "cached": 0}  # the first job with its class settings
    assert final["progress"] == "30/30"

    # The artifact: download, verify, load into diffusers.
    artifact = json.loads(cluster.kubectl("get", "ma", final["artifact"], "-n", namespace, "-o", "json").stdout)
    spec = artifact["spec"]
    adapter = read(minio, spec["uri"])
    assert spec["uri"].endswith(f"/{names.WEIGHT_NAME}")
    assert hashlib.sha256(adapter).hexdigest() == spec["sha256"]
    assert len(adapter) == spec["sizeBytes"]
    metadata = ArtifactMetadata.loads(read(minio, spec["metadataUri"]))
    assert (metadata.sha256, metadata.size_bytes, metadata.weight_name) == (spec["sha256"], len(adapter),
                                                                            names.WEIGHT_NAME)
    assert (metadata.artifact_name, metadata.job.name) == (final["artifact"], "cloody")
    assert metadata.trainer_image == f"{TRAINER_IMAGE}:e2e"  # the image the pods ran, as the chart set it
    assert artifact["status"]["phase"] == "Ready"  # its adapter's sha256 was checked in storage
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / metadata.weight_name).write_bytes(adapter)
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(session_model(tmp_path, minio), safety_checker=None)
    before = pipe("a photo of sks cat", num_inference_steps=2, height=64, width=64, output_type="np",
                  generator=torch.Generator().manual_seed(0)).images
    pipe.load_lora_weights(str(tmp_path / "adapter"))
    after = pipe("a photo of sks cat", num_inference_steps=2, height=64, width=64, output_type="np",
                 generator=torch.Generator().manual_seed(0)).images
    assert abs(before - after).max() > 0

    # Prometheus has the trainer's loss series and the operator's job metrics for this job.
    loss = prometheus.wait_for(
        f'last_over_time(dreambooth_train_loss{{namespace="{namespace}",component="total"}}[30m])')
    assert all(float(sample["value"][1]) > 0 for sample in loss)
    prometheus.wait_for(f'dreambooth_operator_jobs{{namespace="{namespace}",phase="Succeeded"}} == 1')
    platform.exercised.add("cloody")


def read(minio, uri: str) -> bytes:
    parsed = urlparse(uri)
    return minio.client().get_object(parsed.netloc, parsed.path.lstrip("/")).read()


def session_model(tmp_path: Path, minio) -> str:
    """The tiny base model, read back from MinIO as the pods did."""
    target = tmp_path / "base"
    client = minio.client()
    for obj in client.list_objects(BUCKET, prefix="models/tiny-sd/", recursive=True):
        path = target / obj.object_name.removeprefix("models/tiny-sd/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(client.get_object(BUCKET, obj.object_name).read())
    return str(target)
