"""DreamBooth LoRA training with prior preservation, after diffusers' train_dreambooth_lora.py.

Each micro-batch pairs B instance images (instance prompt) with B class images (class prompt);
loss = mse(instance) + lossWeight * mse(prior), in fp32. Images are VAE-encoded once (and the
prompts too while the text encoder is frozen). Checkpoints go to storage every K steps and on
SIGTERM; a restarted run resumes from the newest complete one.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from dreambooth_api.files import PriorSettings, TrainSummary
from dreambooth_api.priorcache import settings_digest

from . import checkpoint, lora, validation
from .attention import use_padded_heads
from .checkpoint import LOSSES
from .config import DistEnv, JobConfig
from .data import batch_indices, load_class_images, load_instance_images, stream_position
from .distributed import make_engine
from .latents import Latents, host_to_device
from .metrics import Metrics
from .model import Components, compile_blocks, compiles, load_components, local_model_dir
from .progress import Progress
from .prompts import PromptEmbeddings
from .readout import Readout
from .schedule import make_scheduler

log = logging.getLogger(__name__)

class Stopped(Exception):
    """SIGTERM arrived; a checkpoint of ``step`` was written before stopping."""

    def __init__(self, step: int):
        super().__init__(f"stopped by SIGTERM after checkpointing step {step}")
        self.step = step


class StopFlag:
    """Set by SIGTERM; the loop checkpoints and leaves at the end of the current step."""

    def __init__(self):
        self.requested = False

    def install(self) -> StopFlag:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "requested", True))
        return self


class DreamBoothModel(torch.nn.Module):
    """UNet and text encoder as one module, so DDP or DeepSpeed wraps a single model."""

    def __init__(self, unet, text_encoder):
        super().__init__()
        self.unet, self.text_encoder = unet, text_encoder

    def forward(self, noisy, timesteps, embeds=None, input_ids=None):
        if embeds is None:
            embeds = self.text_encoder(input_ids, return_dict=False)[0]
        return self.unet(noisy, timesteps, embeds, return_dict=False)[0]


def dreambooth_loss(pred, target, n_instance: int, prior_weight: float):
    """(total, instance, prior) MSE in fp32; the first ``n_instance`` rows are instance images."""
    instance = F.mse_loss(pred[:n_instance].float(), target[:n_instance].float())
    if n_instance == len(pred):
        return instance, instance, torch.zeros_like(instance)
    prior = F.mse_loss(pred[n_instance:].float(), target[n_instance:].float())
    return instance + prior_weight * prior, instance, prior


def diffusion_target(noise_scheduler, latents, noise, timesteps):
    kind = noise_scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return noise_scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"unknown prediction type {kind}")


def draw_latents(sources: list[Latents], position: int, batch: int, seed: int, generator) -> torch.Tensor:
    """B instance latents, then B class latents, from the shuffled sample stream at ``position``."""
    return torch.cat([
        src.sample(batch_indices(len(src), position, batch, seed + k), generator)
        for k, src in enumerate(sources)
    ])


def diffusion_loss(model, noise_scheduler, latents, inputs, generator, dtype, n_instance: int, prior_weight):
    """Noise the latents at random timesteps, predict, and score as DreamBooth does."""
    # Drawn on the host (one generator, checkpointed, the same on every device), copied unsynced.
    noise = host_to_device(torch.randn(latents.shape, generator=generator), latents.device)
    timesteps = host_to_device(torch.randint(
        0, noise_scheduler.config.num_train_timesteps, (len(latents),), generator=generator
    ), latents.device)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    target = diffusion_target(noise_scheduler, latents, noise, timesteps)
    pred = model(noisy.to(dtype), timesteps, **inputs)
    return dreambooth_loss(pred, target, n_instance, prior_weight)


def setup_model(cfg: JobConfig, engine) -> tuple[Components, list[torch.nn.Parameter]]:
    """The base model on the device, frozen, in the compute dtype, with LoRA (fp32) attached."""
    t = cfg.training
    if engine.local_rank == 0:
        local_model_dir(cfg.base_model)  # one download per pod; its other processes wait
    engine.barrier()
    parts = load_components(local_model_dir(cfg.base_model))
    for module in (parts.unet, parts.text_encoder):
        module.to(engine.device)
        if engine.weight_dtype != torch.float32:
            module.to(engine.weight_dtype)
    parts.vae.to(engine.device)  # fp32: its latents are computed once
    torch.manual_seed(t.seed)  # the same initial adapter on every rank
    params = lora.attach(parts.unet, parts.text_encoder, t.lora)
    use_padded_heads(parts.unet)
    if compiles(cfg, engine.device):
        compile_blocks(parts.unet)
    if t.gradient_checkpointing:
        parts.unet.enable_gradient_checkpointing()
        if t.lora.text_encoder:
            parts.text_encoder.gradient_checkpointing_enable()
    parts.unet.train()
    parts.text_encoder.train(t.lora.text_encoder)
    return parts, params


def train(cfg: JobConfig, env: DistEnv, metrics: Metrics, stop: StopFlag | None = None) -> TrainSummary:
    t, tune, stop = cfg.training, cfg.tuning, stop or StopFlag()
    engine = make_engine(cfg, env)
    device, dtype = engine.device, engine.weight_dtype

    # Inputs, all checked before anything is written; then encoded once.
    parts, params = setup_model(cfg, engine)
    instance = load_instance_images(cfg.instance.data_uri, t.resolution)
    classes = None
    if cfg.prior.enabled:
        digest = settings_digest(PriorSettings.for_job(cfg))
        classes = load_class_images(cfg.priors_uri, cfg.prior.num_images, t.resolution, digest)
    prompts = [cfg.instance.prompt] + ([cfg.prior.class_prompt] if classes is not None else [])
    cache_prompts = tune.cache_latents and not t.lora.text_encoder
    embeddings = PromptEmbeddings(parts.tokenizer, parts.text_encoder, prompts, cache=cache_prompts)
    images = [s for s in (instance, classes) if s is not None]
    sources = [Latents(parts.vae, s.pixels, tune.cache_latents, torch.float32) for s in images]

    model = DreamBoothModel(parts.unet, parts.text_encoder)
    optimizer = torch.optim.AdamW(
        params,
        lr=t.learning_rate,
        betas=(tune.adam_beta1, tune.adam_beta2),
        weight_decay=tune.adam_weight_decay,
        eps=tune.adam_epsilon,
        fused=True,  # one kernel for all LoRA tensors (CUDA and CPU alike)
    )
    lr_scheduler = make_scheduler(optimizer, t.lr_scheduler, t.lr_warmup_steps, t.max_steps)
    model = engine.prepare(model, optimizer)
    generator = torch.Generator().manual_seed(t.seed * 100_003 + engine.rank)
    first_step, state = resume(cfg, engine, lr_scheduler, generator)

    metrics.max_steps.set(t.max_steps)
    metrics.step.set(first_step)
    progress = Progress(cfg.progress_uri if engine.rank == 0 else None, t.max_steps, engine.world_size)
    losses = [state.get(k, 0.0) for k in LOSSES]
    resumed_from = checkpoint.step_uri(cfg.checkpoints_uri, first_step) if first_step else None
    progress.start(first_step, resumed_from, dict(zip(LOSSES, losses, strict=True)))
    samples_per_step = len(sources) * t.batch_size * t.gradient_accumulation * engine.world_size
    readout, stopping = Readout(engine.mean, device), False
    for step in range(first_step, t.max_steps):
        totals = torch.zeros(3, device=device)
        for micro in range(t.gradient_accumulation):
            position = stream_position(step, micro, t.gradient_accumulation, engine.rank, engine.world_size,
                                       t.batch_size)
            latents = host_to_device(draw_latents(sources, position, t.batch_size, t.seed, generator), device)
            inputs = {k: host_to_device(v, device) for k, v in embeddings.batch([t.batch_size] * len(sources)).items()}
            with engine.accumulating(last=micro == t.gradient_accumulation - 1):
                loss, inst_loss, prior_loss = diffusion_loss(
                    model, parts.noise_scheduler, latents, inputs, generator, dtype, t.batch_size,
                    cfg.prior.loss_weight,
                )
                engine.backward(loss / t.gradient_accumulation)
            totals += torch.stack([loss, inst_loss, prior_loss]).detach().float()
        engine.step(params)
        lr_scheduler.step()
        done = step + 1

        # The host reads the previous step's numbers while this one runs, and waits for this one
        # only where it stops anyway: a checkpoint, a validation, or SIGTERM on some rank.
        readout.push(done, totals / t.gradient_accumulation, stop.requested, lr_scheduler.get_last_lr()[0])
        results = readout.retire(keep=1)
        every = t.validation.every_steps if t.validation else None
        validating = bool(every and done % every == 0)
        due = done % t.checkpoint_interval == 0 or done == t.max_steps
        if due or validating or any(r.stop for r in results):
            results += readout.retire(keep=0)
        stopping = stopping or any(r.stop for r in results)
        checkpointing = due or stopping
        for r in results:
            losses, elapsed = r.losses, r.seconds
            report(metrics, r.step, losses, samples_per_step, elapsed, r.learning_rate, device)
            if engine.rank == 0:
                log.info("step %d/%d loss %.5f (instance %.5f, prior %.5f) %.1f samples/s",
                         r.step, t.max_steps, *losses, samples_per_step / elapsed)
            saved = None
            if r.step == done and checkpointing:
                saved = save_checkpoint(cfg, engine, done, lr_scheduler, generator, losses)
                metrics.checkpoints.inc()
            progress.update(r.step, force=saved is not None, last_checkpoint=saved, learning_rate=r.learning_rate,
                            images_per_second=samples_per_step / elapsed, **dict(zip(LOSSES, losses, strict=True)))
        if validating:
            validate(cfg, engine, parts, done)
        if stopping and done < t.max_steps:
            raise Stopped(done)
    return TrainSummary(
        step=t.max_steps,
        **dict(zip(LOSSES, losses, strict=True)),
        last_checkpoint=checkpoint.step_uri(cfg.checkpoints_uri, t.max_steps),
        world_size=engine.world_size,
        adapter_digest=adapter_digest(engine, cfg),
    )


def adapter_digest(engine, cfg: JobConfig) -> str:
    """sha256 of this rank's LoRA weights: equal on every rank when replicas are in sync."""
    digest = hashlib.sha256()
    sds = lora_state_dicts(engine, cfg)
    for part, sd in sorted(sds.items()):
        for name in sorted(sd):
            digest.update(f"{part}.{name}".encode())
            digest.update(sd[name].numpy().tobytes())
    return digest.hexdigest()


def report(metrics: Metrics, step: int, losses, samples: int, seconds: float, lr: float, device) -> None:
    for component, value in zip(("total", "instance", "prior"), losses, strict=True):
        metrics.loss.labels(component).set(value)
    metrics.step.set(step)
    metrics.steps.inc()
    metrics.samples.inc(samples)
    metrics.samples_per_second.set(samples / seconds)
    metrics.learning_rate.set(lr)
    metrics.observe_gpu(device)


def lora_state_dicts(engine, cfg: JobConfig) -> dict:
    """The adapters' weights, whole on every rank (ZeRO-3 gathers its partitions: collective)."""
    unwrapped = engine.unwrap()
    with engine.gathered():
        return lora.state_dicts(unwrapped.unet, unwrapped.text_encoder, cfg.training.lora)


def save_checkpoint(cfg: JobConfig, engine, step: int, lr_scheduler, generator, losses) -> str:
    sds = lora_state_dicts(engine, cfg)
    extra = dict(zip(LOSSES, losses, strict=True))
    uri = checkpoint.save(cfg.checkpoints_uri, step, engine, sds, lr_scheduler, generator, extra)
    if engine.rank == 0:
        checkpoint.prune(cfg.checkpoints_uri, cfg.training.checkpoints_to_keep)
        log.info("checkpoint %s", uri)
    return uri


def resume(cfg: JobConfig, engine, lr_scheduler, generator) -> tuple[int, dict]:
    """Load the newest complete checkpoint, if any; return the step to continue from, its state."""
    step = checkpoint.latest(cfg.checkpoints_uri)
    if step is None:
        return 0, {}
    with tempfile.TemporaryDirectory(prefix="dreambooth-resume-") as tmp:
        state, sds = checkpoint.download(cfg.checkpoints_uri, step, Path(tmp))
        unwrapped = engine.unwrap()
        with engine.gathered(modifier_rank=0):
            lora.load_state_dicts(unwrapped.unet, unwrapped.text_encoder, sds)
        if not engine.load_optimizer(Path(tmp), same_world=state["world_size"] == engine.world_size):
            log.warning("checkpoint step-%d: optimizer state not restored (world size %s → %s)",
                        step, state["world_size"], engine.world_size)
        lr_scheduler.load_state_dict(torch.load(Path(tmp) / "lr_scheduler.pt", weights_only=False))
        checkpoint.load_rng(Path(tmp), engine.rank, generator)
    log.info("resumed from checkpoint step-%d", step)
    return step, state


def validate(cfg: JobConfig, engine, parts, step: int) -> None:
    """Images for the validation prompts with the current adapter (rank 0; others wait)."""
    unwrapped = engine.unwrap()
    with engine.gathered(unwrapped.parameters()), engine.unhooked():
        if engine.rank == 0:
            pipe = validation.pipeline_from(parts, unwrapped.unet, unwrapped.text_encoder, engine.device)
            images = validation.sample(pipe, validation.sample_spec(cfg), cfg.training.resolution)
            validation.upload(images, f"{cfg.validation_uri.rstrip('/')}/step-{step}")
            unwrapped.unet.train()
        engine.barrier()
