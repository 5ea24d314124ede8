"""Accelerate (DDP) or DeepSpeed ZeRO (stage 0-3) behind one small interface for the training loop.

Accelerate drops DeepSpeed when ``cpu=True``, so the ``deepspeed`` backend drives DeepSpeed
directly (its CPU accelerator falls back to gloo): the same path runs on GPUs and in the CPU
tests. Either way the real world size is asserted against the job's, never assumed. ZeRO-3
partitions the parameters too: whoever reads or writes the LoRA weights, or runs the model
outside the engine (validation), does so inside ``gathered()``, on every rank.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import torch

from .config import DistEnv, JobConfig
from .errors import ConfigError

log = logging.getLogger(__name__)

_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def check_zero_stage(stage: int) -> None:
    """``stage`` must be a ZeRO stage this DeepSpeed runs."""
    from deepspeed.runtime.zero.config import ZeroStageEnum

    try:
        ZeroStageEnum(stage)
    except ValueError:
        runs = ", ".join(str(s.value) for s in ZeroStageEnum)
        raise ConfigError(f"distributed.deepspeed.zeroStage {stage} is not one DeepSpeed runs ({runs})") from None


def _mixed_precision(cfg: JobConfig) -> str:
    mp = cfg.training.mixed_precision
    if mp == "fp16" and not torch.cuda.is_available():
        log.warning("fp16 needs a GPU; training in fp32 on CPU")
        return "no"
    return mp


def _check_world(expected: int, env: DistEnv, actual: int, what: str) -> None:
    real = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    if not expected == env.world_size == actual == real:
        raise ConfigError(
            f"world size mismatch: job wants {expected} processes, WORLD_SIZE={env.world_size}, "
            f"{what} reports {actual}, torch.distributed has {real}"
        )


class AccelerateEngine:
    """DDP through Accelerate, one process per GPU (gloo on CPU)."""

    def __init__(self, cfg: JobConfig, env: DistEnv):
        from accelerate import Accelerator

        self.mixed_precision = _mixed_precision(cfg)
        self.accelerator = Accelerator(
            cpu=not torch.cuda.is_available(), mixed_precision=self.mixed_precision
        )
        acc = self.accelerator
        _check_world(cfg.world_size, env, acc.num_processes, "accelerate")
        self.rank, self.world_size, self.device = acc.process_index, acc.num_processes, acc.device
        self.local_rank = acc.local_process_index
        self.weight_dtype = _DTYPES[self.mixed_precision]
        self.max_grad_norm = cfg.tuning.max_grad_norm
        self.model = self.optimizer = None

    def gathered(self, params=None, modifier_rank=None):
        return contextlib.nullcontext()  # every rank holds every parameter

    def unhooked(self):
        return contextlib.nullcontext()

    def prepare(self, model: torch.nn.Module, optimizer):
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        return self.model

    def accumulating(self, last: bool):
        """Skip the gradient all-reduce on all but the last micro-batch of a step."""
        return contextlib.nullcontext() if last else self.accelerator.no_sync(self.model)

    def backward(self, loss: torch.Tensor) -> None:
        self.accelerator.backward(loss)

    def step(self, params) -> None:
        self.accelerator.clip_grad_norm_(params, self.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def unwrap(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.model)

    def barrier(self) -> None:
        self.accelerator.wait_for_everyone()

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Elementwise mean over the ranks, on the device (collective; no host wait on NCCL)."""
        return self.accelerator.reduce(values, reduction="mean")

    def save_optimizer(self, directory: Path) -> None:
        if self.rank == 0:
            torch.save(self.optimizer.state_dict(), directory / "optimizer.pt")

    def load_optimizer(self, directory: Path, same_world: bool) -> bool:
        path = directory / "optimizer.pt"
        if not path.is_file():
            return False
        self.optimizer.load_state_dict(torch.load(path, map_location="cpu", weights_only=False))
        return True


class DeepSpeedEngine:
    """DeepSpeed ZeRO: optimizer states (1), also gradients (2), also parameters (3) partitioned."""

    def __init__(self, cfg: JobConfig, env: DistEnv):
        import deepspeed

        self.cfg, self.mixed_precision = cfg, _mixed_precision(cfg)
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(env.local_rank)
        # torch.distributed's env:// rendezvous, also for a single process started without it.
        for key, value in (("RANK", env.rank), ("WORLD_SIZE", env.world_size), ("LOCAL_RANK", env.local_rank),
                           ("MASTER_ADDR", env.master_addr), ("MASTER_PORT", env.master_port)):
            os.environ.setdefault(key, str(value))
        deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo", auto_mpi_discovery=False)
        self.rank, self.world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
        _check_world(cfg.world_size, env, self.world_size, "deepspeed")
        self.local_rank = env.local_rank
        self.device = torch.device("cuda", env.local_rank) if cuda else torch.device("cpu")
        self.weight_dtype = _DTYPES[self.mixed_precision]
        self.stage = cfg.distributed.zero_stage
        self.engine = None

    def prepare(self, model: torch.nn.Module, optimizer):
        import deepspeed

        t = self.cfg.training
        config = {
            "train_micro_batch_size_per_gpu": 2 * t.batch_size,
            "gradient_accumulation_steps": t.gradient_accumulation,
            "gradient_clipping": self.cfg.tuning.max_grad_norm,
            "zero_optimization": {"stage": self.stage},
            "bf16": {"enabled": self.mixed_precision == "bf16"},
            "fp16": {"enabled": self.mixed_precision == "fp16"},
            "steps_per_print": 1 << 30,
        }
        self.engine, self.optimizer, _, _ = deepspeed.initialize(
            model=model, optimizer=optimizer, config=config
        )
        return self.engine

    def gathered(self, params=None, modifier_rank=None):
        """Whole parameters (default: the trainable ones) inside the block; collective.

        With ``modifier_rank``, that rank's changes are kept and partitioned again.
        """
        if self.stage != 3:
            return contextlib.nullcontext()
        import deepspeed

        if params is None:
            params = [p for p in self.engine.module.parameters() if p.requires_grad]
        return deepspeed.zero.GatheredParameters(list(params), modifier_rank=modifier_rank)

    @contextlib.contextmanager
    def unhooked(self):
        """ZeRO-3's fetch/release hooks off, so gathered modules run as plain ones (as TRL does)."""
        if self.stage != 3:
            yield
            return
        offload = self.engine.optimizer.parameter_offload
        for param in offload.module.parameters(recurse=True):
            param.ds_active_sub_modules.clear()
        for hook in offload.forward_hooks + offload.backward_hooks:
            hook.remove()
        offload.forward_hooks, offload.backward_hooks = [], []
        try:
            yield
        finally:
            offload._register_deepspeed_module(offload.module)

    def accumulating(self, last: bool):
        return contextlib.nullcontext()  # DeepSpeed reduces at its own accumulation boundary

    def backward(self, loss: torch.Tensor) -> None:
        # The loop already divides by the accumulation steps; DeepSpeed must not do it again.
        self.engine.backward(loss, scale_wrt_gas=False)
        self.engine.step()  # called every micro-batch; it steps at the boundary

    def step(self, params) -> None:
        pass  # DeepSpeed clipped and stepped in backward() at the accumulation boundary

    def unwrap(self) -> torch.nn.Module:
        return self.engine.module

    def barrier(self) -> None:
        torch.distributed.barrier()

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        values = values.clone()
        torch.distributed.all_reduce(values)
        return values / self.world_size

    def save_optimizer(self, directory: Path) -> None:
        # Collective: every rank writes its partition; frozen base weights are left out.
        self.engine.save_checkpoint(
            str(directory / "deepspeed"), tag="zero", save_latest=False, exclude_frozen_parameters=True
        )

    def load_optimizer(self, directory: Path, same_world: bool) -> bool:
        if not same_world or not (directory / "deepspeed" / "zero").is_dir():
            return False  # ZeRO partitions only fit the world size that wrote them
        self.engine.load_checkpoint(
            str(directory / "deepspeed"),
            tag="zero",
            load_module_strict=False,
            load_optimizer_states=True,
            load_lr_scheduler_states=False,
        )
        return True


def make_engine(cfg: JobConfig, env: DistEnv):
    if cfg.distributed.backend == "deepspeed":
        return DeepSpeedEngine(cfg, env)
    return AccelerateEngine(cfg, env)
