import hashlib

import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline
from dreambooth_trainer.tiny_model import write_tiny_model


def _digest(root):
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_tiny_model_is_small_and_deterministic(tiny_model, tmp_path):
    again = write_tiny_model(tmp_path / "again")
    assert _digest(again) == _digest(tiny_model)
    size = sum(p.stat().st_size for p in tiny_model.rglob("*") if p.is_file())
    assert size < 10 * 2**20
    assert (tiny_model / "tokenizer" / "vocab.json").is_file()
    assert (tiny_model / "tokenizer" / "merges.txt").is_file()


def test_tiny_model_loads_and_renders_with_stock_diffusers(tiny_model):
    pipe = StableDiffusionPipeline.from_pretrained(tiny_model, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe.unet).__name__ == "UNet2DConditionModel"
    assert type(pipe.text_encoder).__name__ == "CLIPTextModel"
    ids = pipe.tokenizer("a photo of sks cat").input_ids
    assert ids[0] == pipe.tokenizer.bos_token_id and ids[-1] == pipe.tokenizer.eos_token_id
    assert len(ids) == 7  # the BPE merges whole words: bos a photo of sks cat eos
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    image = pipe(
        "a photo of a cat", num_inference_steps=2, height=64, width=64,
        generator=torch.Generator().manual_seed(0), output_type="np",
    ).images[0]
    assert image.shape == (64, 64, 3)
