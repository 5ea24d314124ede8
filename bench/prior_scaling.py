"""Prior-generation wall time against `prior.shards` (issue 14): measures the parts of one prior pod here,
with the real trainer code, and prints what 1, 2, 4 and 8 shards would take. Prints figures, asserts nothing.

    .venv/bin/python bench/prior_scaling.py [--images 200] [--shards 1 2 4 8] [--steps 10] [--batch 4]
        [--pod-start 20] [--fetch-mib-s 200] [--upload-seconds-per-image S] [--device cpu|cuda] [--model DIR | --sd15]

Shard i of N makes images i, i+N, … in its own pod: the pod starts (assumed: --pod-start), fetches the base model
into its emptyDir home (assumed: model size / --fetch-mib-s), imports the trainer, loads the pipeline, generates
in full batches (a short last batch costs a full one), PNG-encodes and uploads each image with its entry. The
phase ends with the slowest shard. Measured here: imports (a child process), pipeline load, the first and a
steady batch (the real generate_priors into a file:// store), PNG encoding and storing per image. On a GPU:
``--device cuda --sd15`` (SD 1.5's architecture with random weights, as bench/trainer_gpu.py builds it).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLOODY = REPO / "examples" / "data" / "cloody-cat"
sys.path.insert(0, str(REPO / "trainer-image"))  # as trainer_gpu.py: a GPU machine may have no editable install


class Rates(list):
    """Stands in for the prior_images_per_second gauge and keeps each value set: one per batch."""

    set = list.append


class Clock:
    """Wraps a trainer function and keeps the wall time of each call."""

    def __init__(self, fn):
        self.fn, self.times = fn, []

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.times.append(time.perf_counter() - started)


def imports(device: str, repeats: int) -> float:
    """A fresh interpreter importing what a prior pod imports (diffusers' pipeline included, which
    load_pipeline imports lazily), and on a GPU creating the CUDA context: median wall seconds."""
    code = "import dreambooth_trainer.prior, dreambooth_trainer.__main__; from diffusers import StableDiffusionPipeline"
    if device == "cuda":
        code += "; import torch; torch.zeros(1, device='cuda')"
    path = os.pathsep.join(filter(None, [str(REPO / "trainer-image"), os.environ.get("PYTHONPATH")]))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": path})
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def load(model: Path, device, repeats: int) -> float:
    import torch
    from dreambooth_trainer.model import inference_dtype, load_pipeline

    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        pipe = load_pipeline(model, inference_dtype(device), device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
        del pipe
    return statistics.median(times)


def batches(job: dict, device, count: int) -> tuple[float, float, float, float]:
    """The real generate_priors, one shard of ``count`` full batches: seconds of the first batch and of a
    steady one (median of the rest), without PNG encoding and storing, and those two per image."""
    from dreambooth_trainer import prior, prior_cache
    from dreambooth_trainer.config import JobConfig
    from dreambooth_trainer.metrics import Metrics

    size = job["prior"]["sampler"]["batchSize"]
    job["prior"]["numImages"] = size * count
    metrics = Metrics("prior")
    metrics.prior_images_per_second = rates = Rates()  # images / batch wall (sampling, encoding, storing)
    encode, store = Clock(prior.png_bytes), Clock(prior_cache.store_image)
    prior.png_bytes, prior_cache.store_image = encode, store  # timed stand-ins that call the real ones
    try:
        prior.generate_priors(JobConfig.model_validate(job), 0, 1, device=device, metrics=metrics)
    finally:
        prior.png_bytes, prior_cache.store_image = encode.fn, store.fn
    generation = [size / rate - sum(encode.times[k * size:(k + 1) * size]) - sum(store.times[k * size:(k + 1) * size])
                  for k, rate in enumerate(rates)]
    return (generation[0], statistics.median(generation[1:] or generation), statistics.median(encode.times),
            statistics.median(store.times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=200, help="prior.numImages (200: DreamBooth's usual count)")
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--steps", type=int, help="sampler steps (default: 50 on cuda, 10 on cpu to keep it short)")
    parser.add_argument("--batch", type=int, default=4, help="prior.sampler.batchSize (the API's default: 4)")
    parser.add_argument("--resolution", type=int, help="default: 512 with --model or --sd15, else 64")
    parser.add_argument("--pod-start", type=float, default=20.0, help="assumed seconds from pod creation to a running "
                        "container, on a warm node, image cached (a cold pull of the trainer image adds minutes)")
    parser.add_argument("--fetch-mib-s", type=float, default=200.0, help="assumed MiB/s of the base-model download "
                        "each pod makes into its own emptyDir")
    parser.add_argument("--upload-seconds-per-image", type=float, help="what storing one image and its entry costs "
                        "in your object store (default: measured, to a local file:// store)")
    parser.add_argument("--worth", type=float, default=0.10, help="a step in shards pays if it saves this much wall")
    parser.add_argument("--measure-batches", type=int, default=4, help="batches generated (the first is a warm-up)")
    parser.add_argument("--repeats", type=int, default=3, help="timings of imports and of model load (median)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--model", type=Path, help="a diffusers SD directory (default: the tiny model)")
    group.add_argument("--sd15", action="store_true", help="SD 1.5's architecture, random weights (needs cuda)")
    args = parser.parse_args()
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch is imported, here and in the child
    steps = args.steps or (50 if args.device == "cuda" else 10)
    resolution = args.resolution or (512 if args.model or args.sd15 else 64)
    if not 1 <= min(args.shards) <= max(args.shards) <= args.images:
        raise SystemExit("shards must be between 1 and --images")
    if args.sd15 and args.device != "cuda":
        raise SystemExit("--sd15 needs --device cuda")

    import diffusers
    import torch
    import transformers
    from dreambooth_trainer.tiny_model import tiny_job, write_tiny_model

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.zeros(1, device=device)  # the CUDA context: counted with the imports (child), not with the load
    with tempfile.TemporaryDirectory(prefix="bench-prior-") as name:
        tmp = Path(name)
        if args.sd15:
            sys.path.insert(0, str(REPO / "bench"))
            from trainer_gpu import write_sd15

            model, label = write_sd15(tmp / "sd15"), "SD 1.5 architecture (random weights)"
        else:
            model = args.model or write_tiny_model(tmp / "tiny")
            label = str(args.model) if args.model else "tiny model"
        mib = sum(f.stat().st_size for f in Path(model).rglob("*") if f.is_file()) / 2**20
        job = tiny_job(model, CLOODY.as_uri(), (tmp / "store").as_uri())
        job["training"]["resolution"] = resolution
        job["prior"]["sampler"] = {"steps": steps, "guidanceScale": 7.5, "seed": 7, "batchSize": args.batch}
        started = time.perf_counter()
        first, steady, encode, store = batches(job, device, args.measure_batches)
        start = imports(args.device, args.repeats)
        loading = load(Path(model), device, args.repeats)
        measured = time.perf_counter() - started

    upload = encode + (store if args.upload_seconds_per_image is None else args.upload_seconds_per_image)
    fetch = mib / args.fetch_mib_s
    fixed = args.pod_start + fetch + start + loading
    print(f"{label}, {mib:.0f} MiB, {resolution} px, {steps} steps, CFG 7.5, batch {args.batch}, {args.device}, "
          f"{torch.get_num_threads()} threads; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"measured in {measured:.0f} s: imports {start:.2f} s, pipeline load {loading:.2f} s, first batch "
          f"{first:.2f} s, steady batch {steady:.2f} s, PNG encode {encode * 1e3:.1f} ms/image, store "
          f"{store * 1e3:.1f} ms/image (file://)")
    print(f"assumed: pod start {args.pod_start:.0f} s, model fetch {fetch:.1f} s ({args.fetch_mib_s:.0f} MiB/s)"
          + ("" if args.upload_seconds_per_image is None else f", store {args.upload_seconds_per_image} s/image"))
    header = "shards img/pod batches start* fetch* imports load generate upload wall speed-up GPU-s cost"
    print(" ".join(f"{h:>8}" for h in header.split()))
    walls, gpus = {}, {}
    for shards in sorted(set(args.shards)):
        counts = [len(range(i, args.images, shards)) for i in range(shards)]
        pods = [(n, math.ceil(n / args.batch)) for n in counts]
        times = [fixed + first + (b - 1) * steady + n * upload for n, b in pods]
        walls[shards], gpus[shards] = max(times), sum(times)  # the slowest shard ends it; each pod holds a GPU
        (n, b), low = pods[0], min(walls)
        row = (shards, n, b, args.pod_start, fetch, start, loading, first + (b - 1) * steady, n * upload,
               walls[shards], f"{walls[low] / walls[shards]:.2f}x", gpus[shards], f"{gpus[shards] / gpus[low]:.2f}x")
        print(" ".join(f"{x:>8}" if isinstance(x, int | str) else f"{x:>8.1f}" for x in row))
    ordered = sorted(walls)
    for before, after in zip(ordered, ordered[1:], strict=False):
        saving = 1 - walls[after] / walls[before]
        if saving < args.worth:
            print(f"{before} -> {after} shards saves {saving:.0%} of wall (< {args.worth:.0%}): beyond {before} "
                  "shards, more cost GPU time for little")
            break
    else:
        print(f"every step in shards saves at least {args.worth:.0%} of wall, up to {ordered[-1]}")
    print("seconds; * assumed, not measured; cost: GPU-seconds against the fewest shards (start and load paid per pod)")


if __name__ == "__main__":
    main()
