"""``dreambooth run``: a DreamBoothJob on this machine, phase by phase, as the pods run it.

Each phase is the trainer's own entrypoint in a subprocess — ``python -m dreambooth_trainer
prior`` once per shard (``JOB_COMPLETION_INDEX``), ``train``, ``publish`` — with
``DREAMBOOTH_JOB_CONFIG`` rendered by the operator's ``render_trainer_config`` and storage
under the work directory. Progress comes from what the trainer writes: class images in the
priors folder, ``progress.json`` and its per-step log line. A rerun of the same job reuses
what is stored (priors, checkpoints), like a restarted pod.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..trainer_config import to_env_value
from .kube import CliError
from .local import REAL, TINY, LocalJob, LocalRunError, local_job, overlay_spec, resolve_data_uri
from .submit import load_jobs

TRAINER = "dreambooth_trainer"
RESULT_PREFIX = "DREAMBOOTH_RESULT "
STEP_LINE = re.compile(r"\bstep (\d+)/(\d+) loss ([0-9.eE+-]+|nan|inf)")
# Variables of a surrounding distributed launch that must not leak into the phases.
CLEARED_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "JOB_COMPLETION_INDEX",
               "DREAMBOOTH_JOB_CONFIG")
POLL_SECONDS = 0.5


def trainer_env(config: dict, logs: Path, phase: str, shard: int | None = None, base: dict | None = None) -> dict:
    """The environment of one phase process, as its pod would have it (storage is local)."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in CLEARED_ENV}
    env.update(DREAMBOOTH_JOB_CONFIG=to_env_value(config), PYTHONUNBUFFERED="1",
               DREAMBOOTH_TERMINATION_LOG=str(logs / f"{phase}{'' if shard is None else f'-{shard}'}.result"))
    if shard is not None:
        env["JOB_COMPLETION_INDEX"] = str(shard)
    return env


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path
    result: dict | None = None
    tail: list[str] = field(default_factory=list)


def _pump(proc: Proc, lines: queue.Queue) -> None:
    with open(proc.log, "a") as log:
        for line in proc.popen.stdout:
            log.write(line)
            log.flush()
            if line.startswith(RESULT_PREFIX):
                proc.result = json.loads(line[len(RESULT_PREFIX):])
            proc.tail = (proc.tail + [line.rstrip()])[-15:]
            lines.put(line)


def run_phase(argvs: list[tuple[str, list[str], dict]], logs: Path, on_line=None, poll=None) -> list[Proc]:
    """Run processes (name, argv, env) together, calling ``on_line`` for each output line and
    ``poll`` twice a second; raise CliError naming the first that failed and why."""
    lines: queue.Queue = queue.Queue()
    procs, threads = [], []
    try:
        for name, argv, env in argvs:
            popen = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            procs.append(Proc(name, popen, logs / f"{name}.log"))
            threads.append(threading.Thread(target=_pump, args=(procs[-1], lines), daemon=True))
            threads[-1].start()
        while any(p.popen.poll() is None for p in procs) or not lines.empty():
            try:
                line = lines.get(timeout=POLL_SECONDS)
                if on_line:
                    on_line(line)
            except queue.Empty:
                pass
            if poll:
                poll()
    except KeyboardInterrupt:
        for p in procs:  # SIGTERM: training writes a checkpoint first; a rerun resumes from it
            if p.popen.poll() is None:
                p.popen.terminate()
        for p in procs:
            p.popen.wait()
        raise
    for t in threads:
        t.join()
    if poll:
        poll()
    for p in procs:
        if p.popen.returncode != 0:
            why = (p.result or {}).get("message") or "\n    ".join(p.tail[-10:])
            reason = (p.result or {}).get("reason", f"exit code {p.popen.returncode}")
            raise CliError(f"{p.name} failed ({reason}): {why}\n  log: {p.log}")
    return procs


class LocalRun:
    def __init__(self, job: LocalJob, workdir: Path, python: str = sys.executable):
        self.job, self.workdir, self.python = job, workdir, python
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def _argv(self, phase: str) -> list[str]:
        return [self.python, "-m", TRAINER, phase]

    def priors(self, parallel: int) -> None:
        prior = self.job.config["prior"]
        if not prior.get("enabled"):
            return
        folder = self.job.layout.path(self.job.config["priorsUri"])
        shards, total = prior["shards"], prior["numImages"]
        with tqdm(total=total, desc="priors", unit="img", file=sys.stderr, dynamic_ncols=True) as bar:
            def poll():
                ready = len(list(folder.glob("class-*.png"))) if folder.is_dir() else 0
                bar.update(min(ready, total) - bar.n)

            for first in range(0, shards, parallel):
                run_phase([(f"prior-{i}", self._argv("prior"), trainer_env(self.job.config, self.logs, "prior", i))
                           for i in range(first, min(first + parallel, shards))], self.logs, poll=poll)

    def train(self) -> None:
        progress = self.job.layout.path(self.job.config["progressUri"])
        total = self.job.config["training"]["maxSteps"]
        with tqdm(total=total, desc="train", unit="step", file=sys.stderr, dynamic_ncols=True) as bar:
            def show(step: int, loss) -> None:
                if step < bar.n:
                    return  # progress.json lags the log lines
                bar.update(step - bar.n)
                if loss is not None and step > 0:  # progress.json starts with a 0.0 loss
                    bar.set_postfix_str(f"loss {float(loss):.4f}")

            def on_line(line: str) -> None:
                match = STEP_LINE.search(line)
                if match:
                    show(int(match.group(1)), match.group(3))

            def poll() -> None:
                try:
                    state = json.loads(progress.read_text())
                except (OSError, ValueError):
                    return
                show(int(state.get("step", 0)), state.get("loss"))

            run_phase([("train", self._argv("train"), trainer_env(self.job.config, self.logs, "train"))],
                      self.logs, on_line=on_line, poll=poll)

    def publish(self) -> dict:
        done = self.job.layout.path(self.job.config["resultUri"])
        if done.is_file():  # as the operator does: a stored result means published
            result = json.loads(done.read_text())
            if self.job.layout.path(result["adapterUri"]).is_file():
                tqdm.write(f"publish: already published ({_shown(done)})", file=sys.stderr)
                return result
        with tqdm(total=None, desc="publish", bar_format="{desc}: {elapsed}", file=sys.stderr) as bar:
            procs = run_phase([("publish", self._argv("publish"), trainer_env(self.job.config, self.logs, "publish"))],
                              self.logs, poll=bar.refresh)
        return json.loads(done.read_text()) if done.is_file() else procs[0].result


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _tiny_model(path: Path) -> Path:
    """The trainer's tiny random model, written once per work directory."""
    if not (path / "model_index.json").is_file():
        tqdm.write(f"writing the tiny model to {_shown(path)}", file=sys.stderr)
        made = subprocess.run([sys.executable, "-m", TRAINER, "tiny-model", str(path)], capture_output=True, text=True)
        if made.returncode != 0:
            raise CliError(f"cannot write the tiny model: {made.stderr.strip()[-2000:]}")
    return path


def prepare(args) -> tuple[LocalJob, Path, str]:
    """The job as it will run here: read, overlaid for the mode, data mapped, config rendered."""
    if importlib.util.find_spec(TRAINER) is None:
        raise CliError(f"dreambooth run needs the trainer package ({TRAINER}) in this environment: "
                       "pip install -e trainer-image (make install does)")
    docs = load_jobs(args.filename)
    if len(docs) != 1:
        raise CliError(f"{args.filename}: dreambooth run takes one DreamBoothJob, found {len(docs)}")
    doc = docs[0]
    name = (doc.get("metadata") or {}).get("name") or Path(args.filename).stem
    mode = args.mode or (REAL if _cuda() else TINY)
    workdir = Path(args.workdir or f"{name}-local").resolve()
    job_file = Path(args.filename) if args.filename != "-" else None
    spec = doc.get("spec") or {}
    try:  # the data first: a job that cannot run here fails before anything is written
        data_uri = resolve_data_uri((spec.get("instance") or {}).get("dataUri", ""), job_file,
                                    Path(args.data) if args.data else None)
        model_uri = f"file://{_tiny_model(workdir / 'models' / 'tiny')}" if mode == TINY else None
        spec = overlay_spec(spec, mode, model_uri=model_uri, steps=args.steps)
        spec.setdefault("instance", {})["dataUri"] = data_uri
        job = local_job(name, spec, mode, workdir)
    except LocalRunError as err:
        raise CliError(str(err)) from None
    except ValueError as err:  # pydantic: the spec itself is invalid
        raise CliError(f"{args.filename}: invalid spec: {err}") from None
    (workdir / "job-config.json").write_text(json.dumps(job.config, indent=2) + "\n")
    return job, workdir, mode


def run(args) -> int:
    started = time.monotonic()
    job, workdir, mode = prepare(args)
    config = job.config
    training = config["training"]
    model = "tiny random model" if mode == TINY else job.spec.base_model.uri
    tqdm.write(f"dreamboothjob {job.name} on this machine ({model}, {training['resolution']} px, "
               f"{training['maxSteps']} steps) in {_shown(workdir)}", file=sys.stderr)
    local = LocalRun(job, workdir)
    cpus = os.cpu_count() or 1
    local.priors(parallel=min(cpus, 2) if mode == TINY else 1)
    local.train()
    result = local.publish()
    artifact_dir = job.layout.path(result["artifactUri"])
    tqdm.write("rendering samples before and after fine-tuning", file=sys.stderr)
    from .samples import write_grid

    grid = write_grid(config, artifact_dir, workdir / f"{job.name}-grid.png", model)
    print(f"done in {time.monotonic() - started:.0f} s")
    print(f"artifact: {_shown(job.layout.path(result['adapterUri']))}")
    print(f"  sha256 {result['sha256']}, {result['sizeBytes']} bytes; metadata.json and samples/ beside it")
    print(f"  load it: pipe.load_lora_weights({_shown(artifact_dir)!r}, "
          "weight_name='pytorch_lora_weights.safetensors')")
    print(f"grid: {_shown(grid)}  (instance photos; samples before and after fine-tuning)")
    if mode == TINY:
        print("  the tiny model's weights are random, so its samples are noise before and after; "
              "--real on a GPU renders the subject")
    return 0
