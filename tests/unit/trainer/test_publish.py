import hashlib
import json

import numpy as np
import torch
from diffusers import StableDiffusionPipeline
from dreambooth_trainer.__main__ import main
from dreambooth_trainer.result import parse

from tests.unit.trainer.helpers import local, start_cli


def _run(phase, job, tmp_path, capsys, monkeypatch):
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    monkeypatch.setenv("DREAMBOOTH_TERMINATION_LOG", str(tmp_path / "termination"))
    code = main([phase, "--config", str(path)])
    return code, parse(capsys.readouterr().out)


def _render(pipe):
    return pipe(
        "a photo of sks cat", num_inference_steps=3, height=32, width=32,
        generator=torch.Generator().manual_seed(0), output_type="np",
    ).images[0]


def test_prior_train_publish_make_an_adapter_stock_diffusers_loads(job, tmp_path, capsys, monkeypatch):
    job["training"]["lora"] = {"rank": 4, "alpha": 8, "textEncoder": True}
    for phase in ("prior", "train"):
        code, result = _run(phase, job, tmp_path, capsys, monkeypatch)
        assert (code, result["status"], result["phase"]) == (0, "Succeeded", phase)
    code, result = _run("publish", job, tmp_path, capsys, monkeypatch)
    assert code == 0 and result["status"] == "Succeeded"
    assert json.loads((tmp_path / "termination").read_text()) == result

    artifact = local(result["artifactUri"])
    assert artifact.parent == local(job["outputUri"]) and artifact.name == result["sha256"]
    weights = artifact / "pytorch_lora_weights.safetensors"
    assert local(result["adapterUri"]) == weights
    assert json.loads(local(job["resultUri"]).read_text()) == {
        k: v for k, v in result.items() if k not in ("phase", "rank", "status")}
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    meta = json.loads((artifact / "metadata.json").read_text())
    assert sha == result["sha256"] == meta["sha256"]
    assert weights.stat().st_size == result["sizeBytes"] == meta["sizeBytes"]

    cloody = local(job["instance"]["dataUri"])
    assert {i["name"]: i["sha256"] for i in meta["instance"]["images"]} == {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in cloody.glob("*.jpg")
    }
    assert meta["baseModel"]["uri"] == job["baseModel"]["uri"]
    assert meta["hyperparameters"]["lora"]["alpha"] == 8
    assert meta["hyperparameters"]["maxSteps"] == meta["training"]["step"] == 6
    assert meta["trainerVersion"] and meta["prior"]["classPrompt"] == "a photo of a cat"
    assert [s["file"] for s in meta["samples"]] == ["samples/sample-00.png"]
    assert [local(u) for u in result["sampleImages"]] == [artifact / "samples" / "sample-00.png"]
    assert (artifact / "samples" / "sample-00.png").is_file()
    assert result["metrics"]["step"] == 6 and result["hyperparameters"]["lora"]["rank"] == 4

    pipe = StableDiffusionPipeline.from_pretrained(local(job["baseModel"]["uri"]), safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    before = _render(pipe)
    pipe.load_lora_weights(str(artifact), weight_name="pytorch_lora_weights.safetensors")
    after = _render(pipe)
    assert np.abs(after - before).max() > 1e-3, "the adapter changes the image"

    # Publishing again (a retried pod: another process, another hash seed) gives the same bytes.
    proc = start_cli("publish", job, tmp_path, tmp_path / "again.log", PYTHONHASHSEED="12345")
    assert proc.wait(timeout=300) == 0
    again = parse((tmp_path / "again.log").read_text())
    assert again["sha256"] == result["sha256"] and again["artifactUri"] == result["artifactUri"]
