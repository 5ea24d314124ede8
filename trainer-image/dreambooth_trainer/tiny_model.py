"""A tiny Stable Diffusion model in diffusers format, for tests and the demo.

Same classes as SD 1.5 (UNet2DConditionModel, AutoencoderKL, CLIPTextModel, CLIPTokenizer,
PNDMScheduler), a few MB of random weights, byte-identical on every run, so nothing in the
tests has to reach a model hub. Loads with ``StableDiffusionPipeline.from_pretrained(path)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from dreambooth_api.files import PriorSettings
from dreambooth_api.jobconfig import JobConfig
from dreambooth_api.priorcache import cache_key, settings_digest

# Same noise schedule as runwayml/stable-diffusion-v1-5's scheduler/scheduler_config.json.
SD15_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}

# Words the byte-level BPE merges into single tokens (everything else falls back to bytes).
_WORDS = ("a", "photo", "of", "sks", "cat", "dog", "on", "the", "in", "beach", "sofa", "painting")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte → printable-character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def _tokenizer_files() -> tuple[dict[str, int], list[str]]:
    """A small CLIP BPE vocabulary: all bytes (with and without ``</w>``) plus a few words."""
    chars = list(_bytes_to_unicode().values())
    vocab_list = chars + [c + "</w>" for c in chars]
    merges: list[str] = []
    for word in _WORDS:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            left, right = pieces[0], pieces[1]
            merges.append(f"{left} {right}")
            pieces = [left + right] + pieces[2:]
            if pieces[0] not in vocab_list:
                vocab_list.append(pieces[0])
    merges = list(dict.fromkeys(merges))
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(vocab_list)}, merges


def write_tiny_model(path: str | Path, sample_size: int = 32) -> Path:
    """Write the tiny model to ``path`` (a directory) and return it.

    ``sample_size`` is the UNet's latent size; the VAE downsamples by 2, so the default model
    renders 64 px images.
    """
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    vocab, merges = _tokenizer_files()
    tok_dir = root / "tokenizer"
    tok_dir.mkdir(exist_ok=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(vocab=str(tok_dir / "vocab.json"), merges=str(tok_dir / "merges.txt"))
    tokenizer.model_max_length = 77
    tokenizer.save_pretrained(tok_dir)

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        layers_per_block=1,
        sample_size=sample_size * 2,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=77,
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        )
    )
    unet.save_pretrained(root / "unet")
    vae.save_pretrained(root / "vae")
    text_encoder.save_pretrained(root / "text_encoder")
    PNDMScheduler(**SD15_SCHEDULER).save_pretrained(root / "scheduler")
    model_index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.32.0",
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (root / "model_index.json").write_text(json.dumps(model_index, indent=2) + "\n")
    return root


def tiny_job(model_dir: str | Path, data_uri: str, root_uri: str, **top) -> dict:
    """A small job config (as the operator would render it) for the tiny model: 64 px (the API's
    minimum), few steps, prior preservation with 4 class images, storage under ``root_uri`` (class
    images in its prior cache, at the digest of the job's prior settings)."""
    root = root_uri.rstrip("/")
    job = {
        "jobName": "tiny",
        "jobUid": "00000000-tiny",
        "baseModel": {"uri": Path(model_dir).resolve().as_uri()},
        "instance": {"prompt": "a photo of sks cat", "dataUri": data_uri},
        "prior": {
            "enabled": True,
            "classPrompt": "a photo of a cat",
            "numImages": 4,
            "lossWeight": 1.0,
            "shards": 1,
            "sampler": {"steps": 3, "guidanceScale": 5.0, "seed": 7, "batchSize": 2},
        },
        "training": {
            "resolution": 64,
            "maxSteps": 6,
            "batchSize": 1,
            "learningRate": 1e-2,
            "mixedPrecision": "no",
            "checkpointEverySteps": 3,
            "lora": {"rank": 4, "alpha": 4},
            "validation": {"prompts": ["a photo of sks cat on the beach"], "numImages": 1},
        },
        "tuning": {"sampleSteps": 3},
        "artifactName": "tiny-lora",
        "checkpointsUri": f"{root}/jobs/00000000-tiny/checkpoints",
        "validationUri": f"{root}/jobs/00000000-tiny/validation",
        "outputUri": f"{root}/artifacts/tiny-lora",
        "progressUri": f"{root}/jobs/00000000-tiny/progress.json",
        "resultUri": f"{root}/jobs/00000000-tiny/result.json",
    }
    job.update(top)
    if "priorsUri" not in top and job["prior"].get("enabled"):
        settings = PriorSettings.for_job(JobConfig.model_validate({**job, "priorsUri": root}))
        job["priorsUri"] = f"{root}/{cache_key('', settings_digest(settings))}"
    return job
