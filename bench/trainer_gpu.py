"""Trainer throughput on one CUDA GPU with the full SD 1.5 architecture (random weights, no
download): training samples/s at 512 px (bf16) and prior images/s (50 steps, CFG), with the
fraction of the GPU's dense bf16 peak they imply and peak memory. Prints figures, asserts nothing.

    python bench/trainer_gpu.py [--steps 30] [--prior-images 16] [--prior-batches 8 16]
        [--runs accelerate:eager:4 accelerate:compiled:4 accelerate:compiled:8 deepspeed2:compiled:4]

Each training run is BACKEND:UNET:BATCH — accelerate (DDP, world size 1) or deepspeed2 (ZeRO-2,
world size 1), the UNet eager or compiled (regional torch.compile), B instance + B class images
a step — so levers and the memory/throughput curve are side by side in one run.

FLOP counts per 512 px sample: UNet LoRA forward+backward ~1.71 TFLOP; one UNet call ~0.80
TFLOP (CFG doubles the calls). The trainer code measured is the real one (prior, train).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "trainer-image"))

from dreambooth_trainer.config import DistEnv, JobConfig  # noqa: E402
from dreambooth_trainer.metrics import Metrics  # noqa: E402
from dreambooth_trainer.prior import generate_priors  # noqa: E402
from dreambooth_trainer.tiny_model import SD15_SCHEDULER, tiny_job, write_tiny_model  # noqa: E402
from dreambooth_trainer.train import train  # noqa: E402

TRAIN_TFLOP_PER_SAMPLE = 1.71
UNET_CALL_TFLOP = 0.80
# Dense bf16 tensor-core peaks (TFLOP/s), by substring of the device name.
PEAKS = {"H200": 989, "H100": 989, "GH200": 989, "B200": 2250, "A100": 312, "L40S": 362, "L40": 181,
         "L4": 121, "A10G": 70, "A10": 125, "RTX 4090": 165, "RTX 6000 Ada": 364, "V100": 125}


class Rates:
    def __init__(self):
        self.values: list[float] = []

    def set(self, value: float) -> None:
        self.values.append(value)


def write_sd15(root: Path) -> Path:
    """SD 1.5's UNet, VAE and CLIP ViT-L/14 text encoder, random weights, fp16 on disk."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    write_tiny_model(root)  # tokenizer, scheduler and model_index.json; the models are replaced
    vocab = len(json.loads((root / "tokenizer" / "vocab.json").read_text()))
    torch.manual_seed(0)
    with torch.device("cuda"):
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4, sample_size=512,
        )
        text = CLIPTextModel(CLIPTextConfig(
            vocab_size=max(vocab, 49408), hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
            num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
        ))
    for name, module in (("unet", unet), ("vae", vae), ("text_encoder", text)):
        module.to(torch.float16).save_pretrained(root / name)
    PNDMScheduler(**SD15_SCHEDULER).save_pretrained(root / "scheduler")
    params = sum(p.numel() for p in unet.parameters())
    print(f"SD 1.5 architecture written: UNet {params / 1e6:.0f}M parameters", flush=True)
    return root


def peak_tflops(override: float | None) -> tuple[float, str]:
    name = torch.cuda.get_device_name()
    if override:
        return override, name
    for key, peak in PEAKS.items():
        if key in name:
            return float(peak), name
    return float("nan"), name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="training steps a run (first 10 are warm-up)")
    parser.add_argument("--runs", nargs="+", default=["accelerate:eager:4", "accelerate:compiled:4",
                                                      "accelerate:compiled:8", "deepspeed2:compiled:4"])
    parser.add_argument("--prior-images", type=int, default=16)
    parser.add_argument("--prior-batches", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak, if the GPU is not known")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("trainer_gpu.py needs a CUDA GPU")
    logging.basicConfig(level=logging.WARNING)
    peak, device = peak_tflops(args.peak_tflops)

    print(f"{device}, dense bf16 peak {peak:.0f} TFLOP/s, torch {torch.__version__}")
    print(f"{'':48} {'rate':>8} {'TFLOP/s':>8} {'of peak':>8} {'peak mem':>9}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-sd15-") as tmp:
        model = write_sd15(Path(tmp) / "sd15")
        base = tiny_job(model, (REPO / "examples/data/cloody-cat").as_uri(), (Path(tmp) / "store").as_uri())
        base["prior"].update(numImages=args.prior_images, sampler={"steps": 50, "guidanceScale": 7.5})
        base["training"]["resolution"] = 512
        priors_uri = base["priorsUri"]
        for batch in args.prior_batches:
            job = json.loads(json.dumps(base))
            job["priorsUri"] = base["priorsUri"] = f"{priors_uri}-{batch}"  # a fresh cache; training uses one
            job["prior"]["sampler"]["batchSize"] = batch
            metrics = Metrics("prior")
            metrics.prior_images_per_second = rates = Rates()
            torch.cuda.reset_peak_memory_stats()
            generate_priors(JobConfig.model_validate(job), 0, 1, metrics=metrics)
            rate = statistics.median(rates.values[1:] or rates.values)
            row(f"prior images/s (50 steps, CFG, batch {batch})", rate, rate * 50 * 2 * UNET_CALL_TFLOP, peak)
        for run in args.runs:
            backend, unet, batch = run.split(":")
            job = json.loads(json.dumps(base))
            job["checkpointsUri"] += f"-{run.replace(':', '-')}"
            job["training"].update(resolution=512, batchSize=int(batch), mixedPrecision="bf16", maxSteps=args.steps,
                                   checkpointEverySteps=args.steps, gradientCheckpointing=args.gradient_checkpointing)
            job["training"].pop("validation", None)
            job["tuning"] = {"compileUnet": unet == "compiled"}
            if backend.startswith("deepspeed"):
                job["distributed"] = {"backend": "deepspeed", "deepspeed": {"zeroStage": int(backend[-1])}}
            metrics = Metrics("train")
            metrics.samples_per_second = rates = Rates()
            torch.cuda.reset_peak_memory_stats()
            train(JobConfig.model_validate(job), DistEnv(), metrics)
            rate = statistics.median(rates.values[10:] or rates.values)
            row(f"train samples/s ({backend}, {unet}, batch {batch}+{batch})", rate,
                rate * TRAIN_TFLOP_PER_SAMPLE, peak)


def row(label: str, rate: float, tflops: float, peak: float) -> None:
    memory = torch.cuda.max_memory_allocated() / 2**30
    print(f"{label:48} {rate:8.2f} {tflops:8.0f} {tflops / peak:8.1%} {memory:7.1f} GiB", flush=True)

if __name__ == "__main__":
    main()
