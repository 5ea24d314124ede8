"""Prior generation: shard i of N makes the class images with global indices i, i+N, ….

Each image's seed comes from the base seed and its global index alone, and images are named by
that index, so any sharding, retry, resume or later job with the same settings makes the same
files. ``priorsUri`` is the prior cache's directory of those settings (``dreambooth_api.priorcache``):
an index whose image and entry are stored, and whose image still has the entry's sha256, is
skipped; a missing one is made, a corrupt one made again. Every image is uploaded, then its
entry, as soon as its batch is decoded (in a thread, while the next batch is made). A manifest
per shard records the settings; images made with other settings are never silently mixed in.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import io
import logging
import time

import torch
from dreambooth_api.files import FileError, PriorManifest, PriorSettings, PriorSummary
from dreambooth_api.names import is_prior_manifest, prior_image_name, prior_manifest_name
from dreambooth_api.priorcache import cached_indices, settings_digest

from . import __version__, prior_cache, storage
from .config import JobConfig
from .errors import ConfigError
from .metrics import Metrics
from .model import inference_dtype, load_pipeline, local_model_dir

log = logging.getLogger(__name__)

image_name = prior_image_name


def image_seed(base_seed: int, index: int) -> int:
    """The seed of global image ``index``: independent of shards, batches and retries."""
    return int(hashlib.sha256(f"{base_seed}:{index}".encode()).hexdigest()[:15], 16)


def shard_indices(shard: int, shards: int, num_images: int) -> list[int]:
    return list(range(shard, num_images, shards))


def prior_settings(cfg: JobConfig) -> PriorSettings:
    """Everything that decides the pixels of a class image (recorded in every manifest)."""
    return PriorSettings.for_job(cfg)


def _check_manifests(priors_uri: str, names: list[str], settings: PriorSettings) -> None:
    for name in filter(is_prior_manifest, names):
        uri = storage.join(priors_uri, name)
        try:
            stored = PriorManifest.loads(storage.read_bytes(uri)).settings
        except FileError as exc:
            raise ConfigError(f"{uri} is not a prior manifest ({exc}); use another priorsUri or delete it") from None
        if stored != settings:
            raise ConfigError(
                f"{uri} was made with other settings ({stored.dumps().decode()}); "
                "use another priorsUri or delete it"
            )


def png_bytes(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@contextlib.contextmanager
def _batch_invariant(device: torch.device):
    """Make an image's pixels independent of the batch it is generated in.

    On CPU, GEMMs split over several threads give rows different rounding depending on their
    position in the batch; one intra-op thread (CPU runs are tests and demos) removes that.
    On GPU, fixed shapes and deterministic cuDNN algorithms do the same.
    """
    threads, bench = torch.get_num_threads(), torch.backends.cudnn.benchmark
    if device.type == "cpu":
        torch.set_num_threads(1)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = bench


def _sample(pipe, cfg: JobConfig, batch: list[int]) -> list:
    """Images for global indices ``batch``, always run at the full batch size.

    The prompt is encoded once and repeated, and a short last batch is padded with repeats of
    its last seed (their outputs are dropped), so every image sees the same shapes.
    """
    sampler = cfg.prior.sampler
    seeds = [image_seed(sampler.seed, i) for i in batch]
    seeds += [seeds[-1]] * (sampler.batch_size - len(seeds))
    images = pipe(
        prompt=cfg.prior.class_prompt,
        num_images_per_prompt=len(seeds),
        num_inference_steps=sampler.steps,
        guidance_scale=sampler.guidance_scale,
        height=cfg.training.resolution,
        width=cfg.training.resolution,
        generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
    ).images
    return images[: len(batch)]


def plan(uri: str, mine: list[int], stored: set[str], digest: str) -> tuple[list[int], set[int]]:
    """Which of this shard's indices to make (in order), and which of them replace a corrupt image."""
    cached = set(cached_indices(stored, max(mine, default=-1) + 1))
    todo, corrupt = [], set()
    for index in mine:
        if index in cached:
            problem = prior_cache.stored_problem(uri, index, digest)
            if problem is None:
                continue
            log.warning("%s; regenerating", problem)
            corrupt.add(index)
        todo.append(index)
    return todo, corrupt


def _store(cfg: JobConfig, shard: int, batch: list[int], images: list, digest: str, device, dtype, metrics) -> None:
    seed = cfg.prior.sampler.seed
    for index, image in zip(batch, images, strict=True):
        prior_cache.store_image(cfg.priors_uri, index, png_bytes(image), seed=image_seed(seed, index),
                                digest=digest, device=device, dtype=dtype)
    if metrics:
        metrics.prior_images.inc(len(batch))
    log.info("prior shard %d: stored %s", shard, [image_name(i) for i in batch])


def generate_priors(
    cfg: JobConfig,
    shard: int,
    shards: int,
    device: torch.device | None = None,
    metrics: Metrics | None = None,
) -> PriorSummary:
    """Make this shard's missing and corrupt class images; return a summary of what was made."""
    if not cfg.prior.enabled:
        return PriorSummary(shard=shard, shards=shards, generated=0, skipped=0)
    if not 0 <= shard < shards:
        raise ConfigError(f"shard index {shard} is outside 0..{shards - 1}")
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    settings, sampler, uri = prior_settings(cfg), cfg.prior.sampler, cfg.priors_uri
    digest, dtype = settings_digest(settings), inference_dtype(device)
    stored = set(storage.list_files(uri))
    _check_manifests(uri, sorted(stored), settings)
    mine = shard_indices(shard, shards, cfg.prior.num_images)
    todo, corrupt = plan(uri, mine, stored, digest)
    log.info("prior shard %d/%d: %d images, %d to make (%d corrupt)", shard, shards, len(mine), len(todo),
             len(corrupt))

    if todo:
        # Compiled only when asked: a shard's few hundred images may not repay the compile.
        pipe = load_pipeline(local_model_dir(cfg.base_model), dtype, device, compiled=cfg.tuning.compile_unet is True)
    # A batch's PNGs are encoded and uploaded while the next batch is generated.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="prior-upload") as uploads:
        stored_batch = None
        for start in range(0, len(todo), sampler.batch_size):
            batch = todo[start : start + sampler.batch_size]
            t0 = time.perf_counter()
            with _batch_invariant(device):
                images = _sample(pipe, cfg, batch)
            if metrics:
                metrics.prior_images_per_second.set(len(batch) / (time.perf_counter() - t0))
                metrics.observe_gpu(device)
            if stored_batch:
                stored_batch.result()  # the previous batch's upload errors surface here, in order
            stored_batch = uploads.submit(_store, cfg, shard, batch, images, digest, device, dtype, metrics)
        if stored_batch:
            stored_batch.result()

    # Other jobs with these settings and sharding may write this file too: with the same settings.
    manifest = PriorManifest(
        settings=settings,
        shard=shard,
        shards=shards,
        num_images=cfg.prior.num_images,
        images=[image_name(i) for i in mine],
        generated=[image_name(i) for i in todo],
        trainer_version=__version__,
    )
    storage.write_bytes(storage.join(uri, prior_manifest_name(shard, shards)), manifest.dumps(indent=2))
    return PriorSummary(shard=shard, shards=shards, generated=len(todo) - len(corrupt),
                        regenerated=len(corrupt), skipped=len(mine) - len(todo))
