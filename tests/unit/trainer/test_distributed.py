"""Two CPU processes (gloo), as two pods of one GPU each would run: DDP and DeepSpeed ZeRO-2."""

import json
import signal
import socket

import pytest
import torch
from diffusers import StableDiffusionPipeline
from dreambooth_trainer import checkpoint
from dreambooth_trainer.__main__ import main
from dreambooth_trainer.result import parse

from tests.unit.trainer.helpers import local, start_cli, wait_for


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    return [parse(text) for text in logs], logs


@pytest.mark.parametrize("backend", ["accelerate", "deepspeed"])
def test_two_ranks_train_one_replicated_adapter(backend, job_with_priors, tmp_path, capsys):
    job = job_with_priors
    job["distributed"] = {"workers": 2, "backend": backend}
    job["training"].update(maxSteps=2, checkpointEverySteps=2, gradientAccumulation=2)
    _train_on_two_ranks(job, tmp_path, run=1)
    job["training"]["maxSteps"] = 4  # the job restarted, both ranks resume from step 2
    results, logs = _train_on_two_ranks(job, tmp_path, run=2)
    for log in logs:
        assert "resumed from checkpoint step-2" in log and "not restored" not in log

    assert [r["rank"] for r in results] == [0, 1]
    assert [r["worldSize"] for r in results] == [2, 2]
    assert results[0]["adapterDigest"] == results[1]["adapterDigest"], "ranks diverged"
    assert results[0]["loss"] == pytest.approx(results[1]["loss"]), "losses are averaged over ranks"
    ckpt = local(job["checkpointsUri"]) / "step-4"
    assert {p.name for p in ckpt.glob("rng-rank*.pt")} == {"rng-rank0.pt", "rng-rank1.pt"}
    if backend == "deepspeed":
        partitions = (ckpt / "deepspeed" / "zero").glob("zero_pp_rank_*optim_states.pt")
        assert sorted(p.name for p in partitions) == [
            "zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"]

    config = tmp_path / "job.json"
    config.write_text(json.dumps({**job, "distributed": {"workers": 1}}))
    assert main(["publish", "--config", str(config)]) == 0
    published = parse(capsys.readouterr().out)
    pipe = StableDiffusionPipeline.from_pretrained(local(job["baseModel"]["uri"]), safety_checker=None)
    sample, text = torch.randn(1, 4, 16, 16), torch.randn(1, 77, 32)
    with torch.no_grad():
        before = pipe.unet(sample, 500, text).sample
        pipe.load_lora_weights(local(published["artifactUri"]))
        after = pipe.unet(sample, 500, text).sample
    assert torch.isfinite(after).all() and not torch.allclose(before, after)


def test_a_world_size_other_than_the_jobs_is_refused(job_with_priors, tmp_path, capsys):
    job = job_with_priors
    job["distributed"] = {"workers": 2}
    config = tmp_path / "job.json"
    config.write_text(json.dumps(job))
    assert main(["train", "--config", str(config)]) == 2
    result = parse(capsys.readouterr().out)
    assert result["reason"] == "InvalidConfig" and "world size" in result["message"]
    assert not local(job["checkpointsUri"]).exists()


def test_sigterm_on_one_rank_stops_both_at_one_checkpoint(job_with_priors, tmp_path):
    job = job_with_priors
    job["distributed"] = {"workers": 2}
    job["training"].update(maxSteps=100_000, checkpointEverySteps=100_000)
    port, procs = str(_free_port()), []
    for rank in (0, 1):
        procs.append(start_cli(
            "train", job, tmp_path, tmp_path / f"rank{rank}.log",
            RANK=str(rank), LOCAL_RANK="0", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
            OMP_NUM_THREADS="1",
        ))
    log0 = tmp_path / "rank0.log"
    wait_for(lambda: "step 3/100000" in log0.read_text() or procs[0].poll() is not None, timeout=300)
    procs[1].send_signal(signal.SIGTERM)  # a pod of the job is deleted first
    assert [p.wait(timeout=300) for p in procs] == [143, 143]
    results = [parse((tmp_path / f"rank{r}.log").read_text()) for r in (0, 1)]
    assert {r["status"] for r in results} == {"Interrupted"}
    assert results[0]["step"] == results[1]["step"] == checkpoint.latest(job["checkpointsUri"])
