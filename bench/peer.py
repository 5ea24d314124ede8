"""Our trainer beside diffusers' reference DreamBooth-LoRA script (../shared/peers/diffusers/), on
the same model, photos, class images, resolution, batch, rank, learning rate and steps, run as
alternating child processes (A, B, A, B, …) so a busy machine slows both alike. Prints samples/s,
samples per CPU-second (user + system time of the process), their ratio and peak RSS; asserts
nothing.

    .venv/bin/python bench/peer.py [--batches 1 2] [--pairs 3] [--steps 40] [--resolution 64]
        [--device cpu|cuda] [--precision no|bf16] [--model DIR | --sd15]

Each run is a whole process, model loading and (ours) latent caching included, as a user runs
it. The reference needs torchvision (``uv pip install torchvision==<torch's>``). On a GPU the
same script runs unchanged (``--device cuda``: both use the GPU; the tiny model unless
``--model DIR`` names a diffusers SD directory).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLOODY = REPO / "examples" / "data" / "cloody-cat"
REFERENCE = REPO.parent / "shared" / "peers" / "diffusers" / "train_dreambooth_lora.py"
INSTANCE_PROMPT, CLASS_PROMPT = "a photo of sks cat", "a photo of a cat"
LEARNING_RATE, RANK, SEED = 1e-4, 4, 0
# The environment the children start from: as given, before importing our trainer here sets
# anything (its package sets GOMP_SPINCOUNT), so the reference runs as its users run it.
GIVEN_ENV = dict(os.environ)


@dataclass(frozen=True)
class Run:
    wall: float  # seconds
    cpu: float  # user + system seconds of the process and its threads
    peak_mib: float
    samples: int  # instance + class images trained on

    @property
    def per_second(self) -> float:
        return self.samples / self.wall

    @property
    def per_cpu_second(self) -> float:
        return self.samples / self.cpu


def measure(command: list[str], samples: int, log: Path, device: str) -> Run:
    """One child process, timed, with its own CPU time and peak RSS (wait4's rusage). On
    ``cpu`` the child sees no GPU, whatever the machine has."""
    env = {**GIVEN_ENV, **({"CUDA_VISIBLE_DEVICES": ""} if device == "cpu" else {})}
    with log.open("w") as out:
        started = time.monotonic()
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.monotonic() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{command[1]} failed ({child.returncode}); its log: {log}\n{log.read_text()[-3000:]}")
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, samples)


def prepare(tmp: Path, model: Path | None, resolution: int, class_images: int, precision: str
            ) -> tuple[dict, Path, Path]:
    """The tiny model (unless one is given), our job config and the class images, made once
    with our prior generator and copied into a plain folder for the reference."""
    from dreambooth_trainer.config import JobConfig
    from dreambooth_trainer.prior import generate_priors
    from dreambooth_trainer.tiny_model import tiny_job, write_tiny_model

    model = model or write_tiny_model(tmp / "tiny")
    job = tiny_job(model, CLOODY.as_uri(), (tmp / "store").as_uri())
    job["prior"].update(numImages=class_images)
    job["training"].update(resolution=resolution, learningRate=LEARNING_RATE, lora={"rank": RANK, "alpha": RANK},
                           lrScheduler="constant", mixedPrecision=precision)
    job["training"].pop("validation", None)  # the reference renders none without --validation_prompt
    generate_priors(JobConfig.model_validate(job), 0, 1)
    classes = tmp / "class-images"
    classes.mkdir()
    for png in sorted(Path(job["priorsUri"].removeprefix("file://")).glob("class-*.png")):
        shutil.copy(png, classes / png.name)
    return job, Path(model), classes


def ours(job: dict, tmp: Path, steps: int, batch: int, run: str) -> list[str]:
    config = {**job, "checkpointsUri": job["checkpointsUri"] + f"-{run}"}
    config["training"] = {**job["training"], "maxSteps": steps, "batchSize": batch, "checkpointEverySteps": steps}
    path = tmp / f"ours-{run}.json"
    path.write_text(json.dumps(config))
    return [sys.executable, __file__, "--child", str(path)]


def reference(script: Path, model: Path, classes: Path, tmp: Path, steps: int, batch: int, resolution: int,
              run: str, precision: str) -> list[str]:
    """The reference's flags for our settings: its preprocessing equals ours with center crop and
    bilinear resizing; no validation, no intermediate checkpoint, the same precision."""
    return [
        sys.executable, str(script), f"--pretrained_model_name_or_path={model}",
        f"--instance_data_dir={CLOODY}", f"--class_data_dir={classes}", f"--output_dir={tmp / f'ref-{run}'}",
        f"--instance_prompt={INSTANCE_PROMPT}", f"--class_prompt={CLASS_PROMPT}", "--with_prior_preservation",
        "--prior_loss_weight=1.0", f"--num_class_images={len(list(classes.iterdir()))}",
        f"--resolution={resolution}", "--center_crop", "--image_interpolation_mode=bilinear",
        f"--train_batch_size={batch}", f"--max_train_steps={steps}", f"--learning_rate={LEARNING_RATE}",
        "--lr_scheduler=constant", "--lr_warmup_steps=0", f"--rank={RANK}", f"--seed={SEED}",
        f"--mixed_precision={precision}", f"--checkpointing_steps={steps + 1}", "--dataloader_num_workers=0",
        "--report_to=all",  # accelerate keeps the trackers installed: none here, so no logging cost
    ]


def child(config_path: str) -> None:
    """Ours, in this process: the trainer's own entry (single process, as one worker runs it)."""
    from dreambooth_trainer.config import DistEnv, JobConfig
    from dreambooth_trainer.metrics import Metrics
    from dreambooth_trainer.train import train

    train(JobConfig.model_validate_json(Path(config_path).read_text()), DistEnv(), Metrics("train"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2], help="instance (and class) images per step")
    parser.add_argument("--pairs", type=int, default=3, help="alternating (ours, reference) pairs per batch")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--class-images", type=int, default=8)
    parser.add_argument("--model", type=Path, help="a diffusers SD directory (default: the tiny model)")
    parser.add_argument("--reference", type=Path, default=REFERENCE, help="diffusers' train_dreambooth_lora.py")
    parser.add_argument("--sd15", action="store_true", help="SD 1.5's architecture, random weights (CUDA)")
    parser.add_argument("--precision", default="no", choices=["no", "bf16", "fp16"], help="both trainers")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    if not args.reference.is_file():
        raise SystemExit(f"the reference script is not at {args.reference}")
    try:
        import torchvision  # noqa: F401  the reference imports it; our trainer does not
    except ImportError:
        import torch

        raise SystemExit("the reference script needs torchvision: .venv/bin/uv pip install --python .venv/bin/python "
                         f"torchvision (the release matching torch {torch.__version__})") from None

    with tempfile.TemporaryDirectory(prefix="bench-peer-") as name:
        tmp = Path(name)
        if args.sd15:
            from trainer_gpu import write_sd15

            args.model = write_sd15(tmp / "sd15")
        job, model, classes = prepare(tmp, args.model, args.resolution, args.class_images, args.precision)
        rows = []
        for batch in args.batches:
            samples = args.steps * batch * 2  # B instance + B class images a step, both trainers
            runs: dict[str, list[Run]] = {"ours": [], "reference": []}
            for pair in range(args.pairs):
                run = f"{batch}-{pair}"
                command = ours(job, tmp, args.steps, batch, run)
                runs["ours"].append(measure(command, samples, tmp / f"ours-{run}.log", args.device))
                command = reference(args.reference, model, classes, tmp, args.steps, batch, args.resolution, run,
                                    args.precision)
                runs["reference"].append(measure(command, samples, tmp / f"ref-{run}.log", args.device))
            rows.append((batch, runs))

    import torch

    precision = "fp32" if args.precision == "no" else args.precision
    print(f"{args.steps} steps, {args.resolution} px, rank {RANK}, prior on, {precision}, {args.device}, "
          f"{torch.get_num_threads()} threads; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'batch':>6} {'':10} {'samples/s':>10} {'samples/CPU-s':>14} {'peak RSS':>10}   (medians of "
          f"{args.pairs} alternating pairs)")
    for batch, runs in rows:
        medians = {who: (statistics.median(r.per_second for r in rs), statistics.median(r.per_cpu_second for r in rs),
                         max(r.peak_mib for r in rs)) for who, rs in runs.items()}
        for who, (rate, per_cpu, peak) in medians.items():
            print(f"{f'{batch}+{batch}':>6} {who:10} {rate:10.2f} {per_cpu:14.2f} {peak:8.0f} MiB")
        ratio = [o.per_cpu_second / r.per_cpu_second for o, r in zip(runs["ours"], runs["reference"], strict=True)]
        speed = medians["ours"][0] / medians["reference"][0]
        print(f"{'':6} {'ratio':10} {speed:9.2f}x {statistics.median(ratio):13.2f}x   "
              f"(per pair: {' '.join(f'{x:.2f}' for x in ratio)})")


if __name__ == "__main__":
    main()
