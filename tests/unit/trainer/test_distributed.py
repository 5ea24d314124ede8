"""Two CPU processes (gloo), as two pods of one GPU each would run: DDP and DeepSpeed ZeRO-2/3;
and the pod's launcher (``python -m dreambooth_trainer train`` with PET_*) passing exit codes on."""

import json
import signal

import pytest
import torch
from diffusers import StableDiffusionPipeline
from dreambooth_trainer import checkpoint
from dreambooth_trainer.__main__ import main

from tests.support.wait import wait_for
from tests.unit.trainer.helpers import free_port as _free_port
from tests.unit.trainer.helpers import local, report, start_cli


def _train_on_two_ranks(job, tmp_path, run):
    port, procs = str(_free_port()), []
    for rank in (0, 1):
        procs.append(start_cli(
            "train", job, tmp_path, tmp_path / f"run{run}-rank{rank}.log",
            RANK=str(rank), LOCAL_RANK="0", WORLD_SIZE="2", JOB_COMPLETION_INDEX=str(rank),
            MASTER_ADDR="127.0.0.1", MASTER_PORT=port, OMP_NUM_THREADS="1",
        ))
    codes = [p.wait(timeout=400) for p in procs]
    logs = [(tmp_path / f"run{run}-rank{r}.log").read_text() for r in (0, 1)]
    assert codes == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    return [report(text) for text in logs], logs


@pytest.mark.parametrize("backend, stage", [("accelerate", None), ("deepspeed", 2), ("deepspeed", 3)])
def test_two_ranks_train_one_replicated_adapter(backend, stage, job_with_priors, tmp_path, capsys):
    job = job_with_priors
    job["distributed"] = {"workers": 2, "backend": backend}
    if stage is not None:
        job["distributed"]["deepspeed"] = {"zeroStage": stage}
    job["training"].update(maxSteps=2, checkpointEverySteps=2, gradientAccumulation=2)
    _train_on_two_ranks(job, tmp_path, run=1)
    job["training"]["maxSteps"] = 4  # the job restarted, both ranks resume from step 2
    results, logs = _train_on_two_ranks(job, tmp_path, run=2)
    for log in logs:
        assert "resumed from checkpoint step-2" in log and "not restored" not in log

    assert [r.rank for r in results] == [0, 1]
    assert [r.train.world_size for r in results] == [2, 2]
    assert results[0].train.adapter_digest == results[1].train.adapter_digest, "ranks diverged"
    assert results[0].train.loss == pytest.approx(results[1].train.loss), "losses are averaged over ranks"
    ckpt = local(job["checkpointsUri"]) / "step-4"
    assert {p.name for p in ckpt.glob("rng-rank*.pt")} == {"rng-rank0.pt", "rng-rank1.pt"}
    if backend == "deepspeed":
        partitions = (ckpt / "deepspeed" / "zero").glob("zero_pp_rank_*optim_states.pt")
        assert sorted(p.name for p in partitions) == [
            "zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"]

    config = tmp_path / "job.json"
    config.write_text(json.dumps({**job, "distributed": {"workers": 1}}))
    assert main(["publish", "--config", str(config)]) == 0
    published = report(capsys.readouterr().out).publish
    pipe = StableDiffusionPipeline.from_pretrained(local(job["baseModel"]["uri"]), safety_checker=None)
    sample, text = torch.randn(1, 4, 8, 8), torch.randn(1, 77, 32)
    with torch.no_grad():
        before = pipe.unet(sample, 500, text).sample
        pipe.load_lora_weights(local(published.artifact_uri))
        after = pipe.unet(sample, 500, text).sample
    assert torch.isfinite(after).all() and not torch.allclose(before, after)


def test_a_world_size_other_than_the_jobs_is_refused(job_with_priors, tmp_path, capsys):
    job = job_with_priors
    job["distributed"] = {"workers": 2}
    config = tmp_path / "job.json"
    config.write_text(json.dumps(job))
    assert main(["train", "--config", str(config)]) == 2
    result = report(capsys.readouterr().out)
    assert result.reason == "InvalidConfig" and "world size" in result.message
    assert not local(job["checkpointsUri"]).exists()


def _launcher_env(port: int) -> dict:
    """A training pod's torchrun settings, as the operator sets them."""
    return dict(PET_NNODES="1", PET_NPROC_PER_NODE="2", PET_NODE_RANK="0", PET_MASTER_ADDR="127.0.0.1",
                PET_MASTER_PORT=str(port), OMP_NUM_THREADS="1")


def test_the_launcher_exits_2_when_its_workers_refuse_the_config(job, tmp_path):
    job["distributed"] = {"workers": 1, "gpusPerWorker": 2}
    job["training"]["batchSize"] = 0
    log = tmp_path / "launcher.log"
    proc = start_cli("train", job, tmp_path, log, **_launcher_env(_free_port()))
    assert proc.wait(timeout=300) == 2, log.read_text()[-3000:]
    # torchrun stops the other worker once one fails, so it may not live to refuse it too
    assert log.read_text().count('"reason":"InvalidConfig"') >= 1, "a worker ran and refused it"


def test_sigterm_to_the_launcher_stops_both_workers_at_one_checkpoint(job_with_priors, tmp_path):
    job = job_with_priors
    job["distributed"] = {"workers": 1, "gpusPerWorker": 2}
    job["training"].update(maxSteps=100_000, checkpointEverySteps=100_000)
    log = tmp_path / "launcher.log"
    proc = start_cli("train", job, tmp_path, log, **_launcher_env(_free_port()))
    wait_for(lambda: "step 3/100000" in log.read_text() or proc.poll() is not None, 300, "step 3 in the log")
    proc.send_signal(signal.SIGTERM)  # the kubelet signals the pod's PID 1, the launcher
    assert proc.wait(timeout=300) == 143, log.read_text()[-3000:]
    step = checkpoint.latest(job["checkpointsUri"])
    assert step is not None and step >= 3
    assert log.read_text().count('"status":"Interrupted"') == 2
