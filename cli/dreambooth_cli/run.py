"""``dreambooth run``: a DreamBoothJob on this machine, phase by phase, as the pods run it.

Each phase is the trainer's own entrypoint in a subprocess — ``python -m dreambooth_trainer
prior`` once per shard (``JOB_COMPLETION_INDEX``), ``train``, ``publish`` — with
``DREAMBOOTH_JOB_CONFIG`` rendered by ``dreambooth_api.jobconfig.render_job_config`` and storage
under the work directory. Progress comes from the files the trainer writes, read with their
models in ``dreambooth_api.files``: class images in the priors folder, ``progress.json``
(``Progress``), ``result.json`` (``PublishResult``), ``metadata.json`` (``ArtifactMetadata``), and
each phase's ``DREAMBOOTH_RESULT`` line (``PhaseReport``). A rerun of the same job reuses what is
stored (priors, checkpoints), like a restarted pod.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from dreambooth_api.files import RESULT_PREFIX, ArtifactMetadata, FileError, PhaseReport, PublishResult
from dreambooth_api.jobconfig import JobConfig, to_env_value
from dreambooth_api.names import JOB_CONFIG_ENV

from .bars import open_bar, say
from .kube import CliError
from .local import REAL, TINY, LocalJob, LocalRunError, local_job, overlay_spec, resolve_data_uri
from .progress import priors_ready, show_training
from .submit import load_jobs

TRAINER = "dreambooth_trainer"
# Variables of a surrounding distributed launch that must not leak into the phases.
CLEARED_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "JOB_COMPLETION_INDEX",
               JOB_CONFIG_ENV)
POLL_SECONDS = 0.5


def trainer_env(config: JobConfig, logs: Path, phase: str, shard: int | None = None, base: dict | None = None) -> dict:
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
    report: PhaseReport | None = None
    tail: list[str] = field(default_factory=list)


def _pump(proc: Proc) -> None:
    with open(proc.log, "a") as log:
        for line in proc.popen.stdout:
            log.write(line)
            log.flush()
            if line.startswith(RESULT_PREFIX):
                proc.report = PhaseReport.find(line) or proc.report
            proc.tail = (proc.tail + [line.rstrip()])[-15:]


def run_phase(argvs: list[tuple[str, list[str], dict]], logs: Path, poll=None) -> list[Proc]:
    """Run processes (name, argv, env) together, calling ``poll`` twice a second; raise CliError
    naming the first that failed and why (its ``DREAMBOOTH_RESULT`` report, else its last lines)."""
    procs, threads = [], []
    try:
        for name, argv, env in argvs:
            popen = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            procs.append(Proc(name, popen, logs / f"{name}.log"))
            threads.append(threading.Thread(target=_pump, args=(procs[-1],), daemon=True))
            threads[-1].start()
        while any(p.popen.poll() is None for p in procs):
            if poll:
                poll()
            time.sleep(POLL_SECONDS)
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
            why = (p.report and p.report.message) or "\n    ".join(p.tail[-10:])
            reason = (p.report and p.report.reason) or f"exit code {p.popen.returncode}"
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
        config = self.job.config
        if not config.prior.enabled:
            return
        folder, shards = self.job.layout.path(config.priors_uri), config.prior.shards
        total = config.prior.num_images
        bar = open_bar("priors", total, "img")
        try:
            for first in range(0, shards, parallel):
                run_phase([(f"prior-{i}", self._argv("prior"), trainer_env(config, self.logs, "prior", i))
                           for i in range(first, min(first + parallel, shards))], self.logs,
                          poll=lambda: bar.update_to(priors_ready(folder, total)))
        finally:
            bar.close()

    def train(self) -> None:
        config = self.job.config
        progress = self.job.layout.path(config.progress_uri)
        bar = open_bar("train", config.training.max_steps, "step")
        try:
            run_phase([("train", self._argv("train"), trainer_env(config, self.logs, "train"))],
                      self.logs, poll=lambda: show_training(bar, progress))
        finally:
            bar.close()

    def publish(self) -> PublishResult:
        done = self.job.layout.path(self.job.config.result_uri)
        if done.is_file():  # as the operator does: a stored result means published
            result = read_result(done)
            if self.job.layout.path(result.adapter_uri).is_file():
                say(f"publish: already published ({_shown(done)})")
                return result
        bar = open_bar("publish")
        try:
            procs = run_phase([("publish", self._argv("publish"),
                                trainer_env(self.job.config, self.logs, "publish"))],
                              self.logs, poll=lambda: bar.update_to(0))
        finally:
            bar.close()
        if done.is_file():
            return read_result(done)
        report = procs[0].report
        if report is None or report.publish is None:
            raise CliError(f"publish wrote no {_shown(done)} and reported no result\n  log: {procs[0].log}")
        return report.publish


def read_result(path: Path) -> PublishResult:
    try:
        return PublishResult.loads(path.read_bytes())
    except FileError as err:
        raise CliError(f"{_shown(path)}: {err}") from None


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
        say(f"writing the tiny model to {_shown(path)}")
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
    (workdir / "job-config.json").write_text(job.config.model_dump_json(by_alias=True, exclude_none=True,
                                                                         indent=2) + "\n")
    return job, workdir, mode


def run(args) -> int:
    started = time.monotonic()
    job, workdir, mode = prepare(args)
    config = job.config
    model = "tiny random model" if mode == TINY else job.spec.base_model.uri
    say(f"dreamboothjob {job.name} on this machine ({model}, {config.training.resolution} px, "
        f"{config.training.max_steps} steps) in {_shown(workdir)}")
    local = LocalRun(job, workdir)
    cpus = os.cpu_count() or 1
    local.priors(parallel=min(cpus, 2) if mode == TINY else 1)
    local.train()
    result = local.publish()
    artifact_dir = job.layout.path(result.artifact_uri)
    meta_path = job.layout.path(result.metadata_uri)
    try:
        meta = ArtifactMetadata.loads(meta_path.read_bytes())
    except (OSError, FileError) as err:
        raise CliError(f"{_shown(meta_path)}: {err}") from None
    say("rendering samples before and after fine-tuning")
    from .samples import write_grid

    grid = write_grid(config, meta, artifact_dir, workdir / f"{job.name}-grid.png", model)
    print(f"done in {time.monotonic() - started:.0f} s")
    print(f"artifact: {_shown(job.layout.path(result.adapter_uri))}")
    print(f"  sha256 {result.sha256}, {result.size_bytes} bytes; {meta_path.name} and "
          f"{len(meta.samples)} samples beside it")
    print(f"  load it: pipe.load_lora_weights({_shown(artifact_dir)!r}, weight_name={meta.weight_name!r})")
    print(f"grid: {_shown(grid)}  (instance photos; samples before and after fine-tuning)")
    if mode == TINY:
        print("  the tiny model's weights are random, so its samples are noise before and after; "
              "--real on a GPU renders the subject")
    return 0
