"""Checkpoints in storage: ``<checkpointsUri>/step-<n>/``, the last few kept.

A checkpoint holds the LoRA weights (peft format), the optimizer (one file, or DeepSpeed's
partitions), the LR scheduler, each rank's RNG states and ``state.json``; ``state.json`` is
written last, by rank 0 after every rank has uploaded, so a checkpoint without it is partial
and never resumed from.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from . import __version__, storage

log = logging.getLogger(__name__)

STATE = "state.json"
# Losses of the last step, as state.json, progress.json and the train summary name them.
LOSSES = ("loss", "instance_loss", "prior_loss")
_STEP = re.compile(r"^step-(\d+)/state\.json$")


def step_uri(root: str, step: int) -> str:
    return storage.join(root, f"step-{step}")


def complete_steps(root: str) -> list[int]:
    return sorted(int(m.group(1)) for n in storage.list_files(root) if (m := _STEP.match(n)))


def latest(root: str) -> int | None:
    steps = complete_steps(root)
    return steps[-1] if steps else None


def rng_state(generator: torch.Generator) -> dict:
    state = {"generator": generator.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(generator: torch.Generator, state: dict) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save(root: str, step: int, engine, lora_sds: dict, lr_scheduler, generator, extra: dict) -> str:
    """Write step ``step``'s checkpoint from every rank (collective); return its URI."""
    uri = step_uri(root, step)
    with tempfile.TemporaryDirectory(prefix="dreambooth-ckpt-") as tmp:
        local = Path(tmp)
        engine.save_optimizer(local)
        torch.save(rng_state(generator), local / f"rng-rank{engine.rank}.pt")
        if engine.rank == 0:
            for name, sd in lora_sds.items():
                save_file(sd, local / f"{name}_lora.safetensors")
            torch.save(lr_scheduler.state_dict(), local / "lr_scheduler.pt")
        storage.upload_tree(local, uri)
    engine.barrier()
    if engine.rank == 0:
        state = {"step": step, "world_size": engine.world_size, "trainer_version": __version__, **extra}
        storage.write_bytes(storage.join(uri, STATE), json.dumps(state, indent=2).encode())
    engine.barrier()
    return uri


def prune(root: str, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints (and partial older ones)."""
    steps = complete_steps(root)
    if len(steps) <= keep:
        return
    oldest_kept = steps[-keep]
    names = {n.split("/", 1)[0] for n in storage.list_files(root) if n.startswith("step-")}
    for name in sorted(names):
        step = int(name.removeprefix("step-")) if name.removeprefix("step-").isdigit() else None
        if step is not None and step < oldest_kept:
            storage.delete_tree(storage.join(root, name))


def download(root: str, step: int, dest: Path) -> tuple[dict, dict]:
    """Fetch checkpoint ``step`` to ``dest``; return its state and LoRA state dicts."""
    storage.download_tree(step_uri(root, step), dest)
    state = json.loads((dest / STATE).read_text())
    sds = {p.name.removesuffix("_lora.safetensors"): load_file(p) for p in dest.glob("*_lora.safetensors")}
    return state, sds


def load_rng(dest: Path, rank: int, generator: torch.Generator) -> bool:
    path = dest / f"rng-rank{rank}.pt"
    if not path.is_file():
        return False
    set_rng_state(generator, torch.load(path, weights_only=False))
    return True
