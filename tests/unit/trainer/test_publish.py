import hashlib
import json

import numpy as np
import torch
from diffusers import StableDiffusionPipeline
from dreambooth_api.files import ArtifactMetadata, PhaseReport, PublishResult
from dreambooth_api.names import WEIGHT_NAME
from dreambooth_trainer.__main__ import main

from tests.unit.trainer.helpers import local, report, start_cli


def _run(phase, job, tmp_path, capsys, monkeypatch):
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    monkeypatch.setenv("DREAMBOOTH_TERMINATION_LOG", str(tmp_path / "termination"))
    code = main([phase, "--config", str(path)])
    return code, report(capsys.readouterr().out)


def _render(pipe):
    return pipe(
        "a photo of sks cat", num_inference_steps=3, height=64, width=64,
        generator=torch.Generator().manual_seed(0), output_type="np",
    ).images[0]


def test_prior_train_publish_make_an_adapter_stock_diffusers_loads(job, tmp_path, capsys, monkeypatch):
    job["training"]["lora"] = {"rank": 4, "alpha": 8, "textEncoder": True}
    job["trainerImage"] = "ghcr.io/acme/trainer:1.2.3"
    for phase in ("prior", "train"):
        code, result = _run(phase, job, tmp_path, capsys, monkeypatch)
        assert (code, result.status, result.phase) == (0, "Succeeded", phase)
    code, result = _run("publish", job, tmp_path, capsys, monkeypatch)
    assert code == 0 and result.status == "Succeeded"
    assert PhaseReport.loads((tmp_path / "termination").read_bytes()) == result
    published = result.publish

    artifact = local(published.artifact_uri)
    assert artifact.parent == local(job["outputUri"]) and artifact.name == published.sha256
    weights = artifact / WEIGHT_NAME
    assert local(published.adapter_uri) == weights
    assert PublishResult.loads(local(job["resultUri"]).read_bytes()) == published
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    meta = ArtifactMetadata.loads((artifact / "metadata.json").read_bytes())
    assert sha == published.sha256 == meta.sha256
    assert weights.stat().st_size == published.size_bytes == meta.size_bytes

    cloody = local(job["instance"]["dataUri"])
    assert {i.name: i.sha256 for i in meta.instance.images} == {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in cloody.glob("*.jpg")
    }
    assert meta.base_model.uri == job["baseModel"]["uri"]
    assert meta.trainer_image == "ghcr.io/acme/trainer:1.2.3"
    assert meta.hyperparameters["lora"]["alpha"] == 8
    assert meta.hyperparameters["maxSteps"] == meta.training["step"] == 6
    assert meta.trainer_version and meta.prior.settings.class_prompt == "a photo of a cat"
    assert [s.file for s in meta.samples] == ["samples/sample-00.png"]
    assert [local(u) for u in published.sample_images] == [artifact / "samples" / "sample-00.png"]
    assert (artifact / "samples" / "sample-00.png").is_file()
    assert published.metrics["step"] == 6 and published.hyperparameters["lora"]["rank"] == 4

    pipe = StableDiffusionPipeline.from_pretrained(local(job["baseModel"]["uri"]), safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    before = _render(pipe)
    pipe.load_lora_weights(str(artifact), weight_name=WEIGHT_NAME)
    after = _render(pipe)
    assert np.abs(after - before).max() > 1e-3, "the adapter changes the image"

    # Publishing again (a retried pod: another process, another hash seed) gives the same bytes.
    proc = start_cli("publish", job, tmp_path, tmp_path / "again.log", PYTHONHASHSEED="12345")
    assert proc.wait(timeout=300) == 0
    again = report((tmp_path / "again.log").read_text()).publish
    assert again.sha256 == published.sha256 and again.artifact_uri == published.artifact_uri


def test_without_validation_prompts_the_sample_is_the_instance_prompt(job_with_priors, tmp_path, capsys,
                                                                      monkeypatch):
    job = job_with_priors
    job["training"].update(maxSteps=1, checkpointEverySteps=1)
    del job["training"]["validation"]
    assert _run("train", job, tmp_path, capsys, monkeypatch)[0] == 0
    code, result = _run("publish", job, tmp_path, capsys, monkeypatch)
    assert code == 0
    meta = ArtifactMetadata.loads(local(result.publish.metadata_uri).read_bytes())
    assert [(s.prompt, s.file) for s in meta.samples] == [(job["instance"]["prompt"], "samples/sample-00.png")]
