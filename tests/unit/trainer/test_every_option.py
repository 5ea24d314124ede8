"""Every value the API admits trains: each ``lrScheduler`` and each ``zeroStage``, one real run
on the tiny model. The cases come from the API's Literals, so widening one adds a case here,
and a value the trainer cannot run fails."""

import json
import typing

import pytest
import torch
from diffusers.optimization import get_scheduler
from dreambooth_api.files import Progress
from dreambooth_api.scheduling import ZeroStage
from dreambooth_api.training import LrScheduler
from dreambooth_trainer.__main__ import main
from dreambooth_trainer.config import DistEnv, load_config
from dreambooth_trainer.metrics import Metrics
from dreambooth_trainer.train import train

from tests.unit.trainer.helpers import free_port, local, report, start_cli

pytestmark = pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")


def _without_prior(job: dict) -> dict:
    job = json.loads(json.dumps(job))
    job["prior"] = {"enabled": False}
    del job["priorsUri"]
    return job


def _load(job: dict, tmp_path):
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    return load_config(path)  # with the trainer's can-this-run check


@pytest.mark.parametrize("name", typing.get_args(LrScheduler))
def test_every_lr_scheduler_trains_with_diffusers_curve(name, job, tmp_path):
    job = _without_prior(job)
    warmup = 0 if name == "constant" else 2
    job["training"].update(maxSteps=4, checkpointEverySteps=4, lrScheduler=name, lrWarmupSteps=warmup)
    summary = train(_load(job, tmp_path), DistEnv(), Metrics("train"))
    assert summary.step == 4

    reference = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=job["training"]["learningRate"])
    scheduler = get_scheduler(name, reference, num_warmup_steps=warmup, num_training_steps=4)
    for _ in range(4):
        reference.step()
        scheduler.step()
    progress = Progress.loads(local(job["progressUri"]).read_bytes())
    assert progress.learning_rate == pytest.approx(scheduler.get_last_lr()[0], rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("stage", typing.get_args(ZeroStage))
def test_every_zero_stage_trains_resumes_and_publishes(stage, job, tmp_path, capsys):
    job = _without_prior(job)
    job["distributed"] = {"workers": 1, "backend": "deepspeed", "deepspeed": {"zeroStage": stage}}
    job["training"].update(maxSteps=1, checkpointEverySteps=1)
    job["training"]["validation"]["everySteps"] = 1
    _load(job, tmp_path)
    env = dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", OMP_NUM_THREADS="1")
    for run, steps in ((1, 1), (2, 2)):  # the second run resumes from the first one's checkpoint
        job["training"]["maxSteps"] = steps
        log = tmp_path / f"run{run}.log"
        proc = start_cli("train", job, tmp_path, log, MASTER_PORT=str(free_port()), **env)
        assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "resumed from checkpoint step-1" in text and "not restored" not in text
    assert report(text).train.step == 2
    assert (local(job["validationUri"]) / "step-2" / "sample-00.png").is_file()

    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    assert main(["publish", "--config", str(path)]) == 0
    published = report(capsys.readouterr().out).publish
    assert published.step == 2 and local(published.adapter_uri).is_file()
