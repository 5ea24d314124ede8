import json
import re
import signal

import pytest
import torch
import torch.nn.functional as F
from dreambooth_api.files import PriorSettings, Progress
from dreambooth_api.priorcache import settings_digest
from dreambooth_trainer import checkpoint, lora
from dreambooth_trainer.config import DistEnv
from dreambooth_trainer.data import batch_indices, load_class_images, load_instance_images
from dreambooth_trainer.metrics import Metrics
from dreambooth_trainer.model import load_components
from dreambooth_trainer.prompts import tokenize
from dreambooth_trainer.train import DreamBoothModel, dreambooth_loss, train
from safetensors.torch import load_file

from tests.support.wait import wait_for
from tests.unit.trainer.helpers import config, kill, local, report, start_cli


def _train(job):
    return train(config(job), DistEnv(), Metrics("train"))


def _with(job, **training):
    job = json.loads(json.dumps(job))
    job["training"].update(training)
    return job


def _components(cfg, step=None):
    parts = load_components(local(cfg.base_model.uri))
    if step is not None:
        lora.attach(parts.unet, parts.text_encoder, cfg.training.lora)
        state = load_file(local(checkpoint.step_uri(cfg.checkpoints_uri, step)) / "unet_lora.safetensors")
        lora.load_state_dicts(parts.unet, parts.text_encoder, {"unet": state})
    return parts


@torch.no_grad()
def _instance_loss_on_fixed_batch(cfg, parts):
    """MSE of the noise prediction on all instance photos, fixed noise and timesteps."""
    pixels = load_instance_images(cfg.instance.data_uri, cfg.training.resolution).pixels
    g = torch.Generator().manual_seed(1234)
    latents = parts.vae.encode(pixels).latent_dist.mean * parts.vae.config.scaling_factor
    noise = torch.randn(latents.shape, generator=g)
    t = torch.randint(0, 1000, (len(latents),), generator=g)
    embeds = parts.text_encoder(tokenize(parts.tokenizer, cfg.instance.prompt))[0]
    embeds = embeds.expand(len(latents), -1, -1)
    pred = parts.unet(parts.noise_scheduler.add_noise(latents, noise, t), t, embeds).sample
    return F.mse_loss(pred, noise).item()


def test_training_on_the_cloody_photos_lowers_the_instance_loss(job_with_priors):
    job = _with(job_with_priors, maxSteps=30, batchSize=2, checkpointEverySteps=30)
    cfg = config(job)
    summary = _train(job)
    assert summary.step == 30
    before = _instance_loss_on_fixed_batch(cfg, _components(cfg))
    after = _instance_loss_on_fixed_batch(cfg, _components(cfg, step=30))
    assert after < 0.85 * before, (before, after)


def test_first_step_loss_equals_an_independent_computation(job_with_priors):
    """Step 1 (adapter still zero): B instance photos + B class images, as the paper pairs them."""
    job = _with(job_with_priors, maxSteps=1, batchSize=2, seed=5)
    job["prior"]["lossWeight"] = 0.7
    cfg = config(job)
    summary = _train(job)

    parts = _components(cfg)
    instance = load_instance_images(cfg.instance.data_uri, 64).pixels[batch_indices(7, 0, 2, 5)]
    digest = settings_digest(PriorSettings.for_job(cfg))
    classes = load_class_images(cfg.priors_uri, 4, 64, digest).pixels[batch_indices(4, 0, 2, 6)]
    g = torch.Generator().manual_seed(5 * 100_003)  # rank 0's generator
    with torch.no_grad():
        latents = []
        for pixels in (instance, classes):
            dist = parts.vae.encode(pixels).latent_dist
            latents.append((dist.mean + dist.std * torch.randn(dist.mean.shape, generator=g)) * 0.18215)
        latents = torch.cat(latents)
        noise = torch.randn(latents.shape, generator=g)
        t = torch.randint(0, 1000, (4,), generator=g)
        alphas = parts.noise_scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
        noisy = alphas.sqrt() * latents + (1 - alphas).sqrt() * noise
        prompts = (cfg.instance.prompt, cfg.prior.class_prompt)
        text = [parts.text_encoder(tokenize(parts.tokenizer, p))[0] for p in prompts]
        pred = parts.unet(noisy, t, torch.cat([text[0], text[0], text[1], text[1]])).sample.double()
    instance_mse = ((pred[:2] - noise[:2].double()) ** 2).mean().item()
    prior_mse = ((pred[2:] - noise[2:].double()) ** 2).mean().item()
    assert summary.instance_loss == pytest.approx(instance_mse, rel=1e-4)
    assert summary.prior_loss == pytest.approx(prior_mse, rel=1e-4)
    assert summary.loss == pytest.approx(instance_mse + 0.7 * prior_mse, rel=1e-4)


def test_prior_weight_changes_the_gradients(job_with_priors):
    cfg = config(job_with_priors)
    parts = _components(cfg)
    params = lora.attach(parts.unet, parts.text_encoder, cfg.training.lora)
    torch.manual_seed(0)
    for p in params:  # a non-zero adapter, so every LoRA factor gets a gradient
        p.data.normal_(0, 0.05)
    model = DreamBoothModel(parts.unet, parts.text_encoder)
    noisy, noise = torch.randn(4, 4, 16, 16), torch.randn(4, 4, 16, 16)
    embeds = torch.randn(4, 77, 32)

    def grads(weight):
        for p in params:
            p.grad = None
        loss, _, _ = dreambooth_loss(model(noisy, torch.tensor([10, 500, 20, 900]), embeds), noise, 2, weight)
        loss.backward()
        return torch.cat([p.grad.flatten() for p in params])

    g0, g1 = grads(0.0), grads(1.0)
    assert not torch.allclose(g0, g1)
    for p in params:
        p.grad = None
    F.mse_loss(model(noisy[:2], torch.tensor([10, 500]), embeds[:2]), noise[:2]).backward()
    assert torch.allclose(g0, torch.cat([p.grad.flatten() for p in params]), atol=1e-6)


def test_latent_and_prompt_caching_change_speed_not_results(job_with_priors):
    cached = _train(_with(job_with_priors, maxSteps=2))
    job = _with(job_with_priors, maxSteps=2)
    job["tuning"]["cacheLatents"] = False
    job["checkpointsUri"] += "-uncached"
    # Same draws from the same generator; only the VAE's batching differs (rounding, on GPU TF32).
    assert _train(job).loss == pytest.approx(cached.loss, rel=1e-4)


def test_only_the_last_checkpoints_are_kept(job_with_priors):
    job = _with(job_with_priors, maxSteps=5, checkpointEverySteps=1, checkpointsToKeep=2)
    _train(job)
    assert checkpoint.complete_steps(job["checkpointsUri"]) == [4, 5]
    assert sorted(p.name for p in local(job["checkpointsUri"]).iterdir()) == ["step-4", "step-5"]


def _lora_and_optimizer(job, step):
    root = local(checkpoint.step_uri(job["checkpointsUri"], step))
    return load_file(root / "unet_lora.safetensors"), torch.load(root / "optimizer.pt", weights_only=False)


def test_killed_training_resumes_from_its_last_checkpoint(job_with_priors, tmp_path):
    job = _with(job_with_priors, maxSteps=40, checkpointEverySteps=4, lrScheduler="cosine", lrWarmupSteps=3)
    reference = json.loads(json.dumps(job))
    reference["checkpointsUri"] += "-reference"
    _train(reference)

    proc = start_cli("train", job, tmp_path, tmp_path / "first.log")
    root = job["checkpointsUri"]
    wait_for(lambda: checkpoint.latest(root) or proc.poll() is not None, 300, "a first checkpoint")
    kill(proc)
    killed_at = checkpoint.latest(root)
    assert killed_at is not None and killed_at < 40, "killed after a checkpoint, before the end"

    proc = start_cli("train", job, tmp_path, tmp_path / "second.log")
    assert proc.wait(timeout=300) == 0
    log = (tmp_path / "second.log").read_text()
    assert f"resumed from checkpoint step-{killed_at}" in log
    assert re.search(rf"step {killed_at + 1}/40 ", log) and not re.search(rf"step {killed_at}/40 ", log)
    assert checkpoint.latest(root) == 40

    weights, optimizer = _lora_and_optimizer(job, 40)
    ref_weights, ref_optimizer = _lora_and_optimizer(reference, 40)
    # A fresh optimizer would count fewer Adam steps and end elsewhere.
    assert {s["step"].item() for s in optimizer["state"].values()} == {40.0}
    if torch.cuda.is_available():
        return  # CUDA kernels (atomic adds in backward) are not bitwise reproducible run to run
    for name, tensor in ref_weights.items():
        torch.testing.assert_close(weights[name], tensor, rtol=1e-4, atol=1e-6)
    for k, state in ref_optimizer["state"].items():
        got = optimizer["state"][k]["exp_avg_sq"]
        torch.testing.assert_close(got, state["exp_avg_sq"], rtol=1e-3, atol=1e-9)


def test_sigterm_writes_a_checkpoint_before_exiting(job_with_priors, tmp_path):
    job = _with(job_with_priors, maxSteps=100_000, checkpointEverySteps=100_000)
    log = tmp_path / "train.log"
    proc = start_cli("train", job, tmp_path, log)
    wait_for(lambda: "step 3/100000" in log.read_text() or proc.poll() is not None, 300, "step 3 in the log")
    assert kill(proc, signal.SIGTERM) == 143
    step = checkpoint.latest(job["checkpointsUri"])
    assert step is not None and step >= 3
    result = report(log.read_text())
    assert result.status == "Interrupted" and result.step == step


def test_validation_images_are_uploaded_at_the_configured_steps(job_with_priors):
    job = _with(job_with_priors, maxSteps=4)
    prompts = ["a photo of sks cat", "a painting of sks cat"]
    job["training"]["validation"].update(everySteps=2, prompts=prompts, numImages=2)
    _train(job)
    root = local(job["validationUri"])
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png")) == [
        f"step-{s}/sample-{k:02d}.png" for s in (2, 4) for k in range(4)]


def test_progress_for_the_operator_is_written_to_storage(job_with_priors):
    job = _with(job_with_priors, maxSteps=4, checkpointEverySteps=2)
    summary = _train(job)
    progress = Progress.loads(local(job["progressUri"]).read_bytes())
    assert progress.step == progress.max_steps == 4
    assert progress.last_checkpoint == summary.last_checkpoint == checkpoint.step_uri(job["checkpointsUri"], 4)
    assert progress.loss == pytest.approx(summary.loss)
    assert progress.images_per_second > 0 and progress.steps_per_second > 0
