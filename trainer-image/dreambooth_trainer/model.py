"""The base model: fetched once to a local directory, then loaded as diffusers components."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from dreambooth_api.dreamboothjob import BaseModelSource as BaseModelRef

from . import storage
from .attention import use_padded_heads
from .errors import ModelNotFound, StorageNotFound

log = logging.getLogger(__name__)

CACHE_ENV = "DREAMBOOTH_CACHE_DIR"


def local_model_dir(ref: BaseModelRef) -> Path:
    """A local diffusers directory holding the base model (downloaded into the cache once)."""
    parsed = urlparse(ref.uri)
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme else ref.uri)
    else:
        uri = ref.uri
        if parsed.scheme == "hf" and ref.revision and "@" not in uri:
            uri = f"{uri}@{ref.revision}"
        cache = Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "dreambooth"))
        path = cache / "models" / hashlib.sha256(uri.encode()).hexdigest()[:16]
        if not (path / "model_index.json").is_file():
            try:
                storage.download_tree(uri, path)
            except StorageNotFound as exc:
                raise ModelNotFound(f"base model not found at {ref.uri}") from exc
    if not (path / "model_index.json").is_file():
        raise ModelNotFound(
            f"base model not found at {ref.uri}: no diffusers model_index.json there"
        )
    return path


@dataclass
class Components:
    path: Path
    tokenizer: object
    text_encoder: torch.nn.Module
    vae: torch.nn.Module
    unet: torch.nn.Module
    noise_scheduler: object


def load_components(path: Path) -> Components:
    """Tokenizer, text encoder, VAE, UNet (fp32, frozen) and the DDPM training scheduler."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    try:
        parts = Components(
            path=path,
            tokenizer=CLIPTokenizer.from_pretrained(path, subfolder="tokenizer"),
            text_encoder=CLIPTextModel.from_pretrained(path, subfolder="text_encoder"),
            vae=AutoencoderKL.from_pretrained(path, subfolder="vae"),
            unet=UNet2DConditionModel.from_pretrained(path, subfolder="unet"),
            noise_scheduler=DDPMScheduler.from_pretrained(path, subfolder="scheduler"),
        )
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"cannot load the base model at {path}: {exc}") from exc
    for module in (parts.text_encoder, parts.vae, parts.unet):
        module.requires_grad_(False)
        module.eval()
    return parts


def compiles(cfg, device: torch.device) -> bool:
    """Whether the UNet's transformer blocks are compiled: by default on CUDA, where it pays within
    a few steps, not on the CPU, where compiling costs more than it saves; never under ZeRO-3,
    whose hooks gather parameters module by module."""
    wanted = cfg.tuning.compile_unet
    zero3 = cfg.distributed.backend == "deepspeed" and cfg.distributed.zero_stage == 3
    return (device.type == "cuda" if wanted is None else wanted) and not zero3


def compile_blocks(unet) -> bool:
    """Regional torch.compile: each BasicTransformerBlock once (diffusers' ``_repeated_blocks``), so
    compiling takes seconds, not minutes. A block dynamo cannot compile runs eagerly instead; on
    CUDA, Triton builds its launcher with a C compiler, so without one nothing is compiled."""
    if unet.device.type == "cuda" and not (os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")):
        log.warning("UNet not compiled: Triton needs a C compiler (cc) in the image; running eager")
        return False
    torch._dynamo.config.suppress_errors = True
    unet.compile_repeated_blocks()
    return True


def load_pipeline(path: Path, dtype: torch.dtype, device: torch.device, compiled: bool = False):
    """The inference pipeline (no safety checker), with PyTorch SDPA attention (padded heads)."""
    from diffusers import StableDiffusionPipeline

    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            path, dtype=dtype, safety_checker=None, requires_safety_checker=False
        )
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"cannot load the base model at {path}: {exc}") from exc
    use_padded_heads(pipe.unet)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    if compiled:
        compile_blocks(pipe.unet)  # on its device: whether Triton can build depends on it
    return pipe


def inference_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPUs that have it, else fp16; fp32 on CPU: ``names.INFERENCE_DTYPE_POLICY``, which
    class images record in their settings (so in the prior cache's address); change the two
    together (tests/unit/trainer/test_prior_reuse.py holds them to each other)."""
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
