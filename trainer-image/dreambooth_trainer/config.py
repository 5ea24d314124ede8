"""The trainer's job configuration: ``dreambooth_api.jobconfig.JobConfig``, the API's own models.

Read from ``--config PATH`` or the ``DREAMBOOTH_JOB_CONFIG`` environment variable (JSON), then
checked against what this trainer can actually run (its diffusers and DeepSpeed), so a value
the API admits but the trainer cannot run fails here, exit code 2, before any GPU work.
Credentials are never part of it: they come from the environment (see ``storage``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from dreambooth_api.jobconfig import JobConfig
from dreambooth_api.names import JOB_CONFIG_ENV
from pydantic import BaseModel, ValidationError

from .errors import ConfigError

__all__ = ["CONFIG_ENV", "ConfigError", "DistEnv", "JobConfig", "check_runnable", "load_config"]

CONFIG_ENV = JOB_CONFIG_ENV


def check_runnable(cfg: JobConfig) -> JobConfig:
    """Refuse what the API admits but this trainer cannot run (ConfigError)."""
    from .distributed import check_zero_stage
    from .schedule import check_scheduler

    t = cfg.training
    check_scheduler(t.lr_scheduler, t.lr_warmup_steps, t.max_steps)
    if cfg.distributed.backend == "deepspeed":
        check_zero_stage(cfg.distributed.zero_stage)
    return cfg


def load_config(path: str | os.PathLike | None = None) -> JobConfig:
    """The job configuration from ``path``, or else from ``$DREAMBOOTH_JOB_CONFIG``."""
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read job config {path}: {exc.strerror}") from exc
        source = str(path)
    elif os.environ.get(CONFIG_ENV):
        text, source = os.environ[CONFIG_ENV], f"${CONFIG_ENV}"
    else:
        raise ConfigError(f"no job config: pass --config PATH or set {CONFIG_ENV}")
    try:
        cfg = JobConfig.model_validate(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"job config {source} is not JSON: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(f"invalid job config {source}:\n{exc}") from exc
    return check_runnable(cfg)


class DistEnv(BaseModel):
    """The process's place in the job, from the standard distributed environment.

    ``RANK`` wins; without it an Indexed Job pod's rank is ``JOB_COMPLETION_INDEX`` times the
    processes per pod plus ``LOCAL_RANK``.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    completion_index: int | None = None

    @classmethod
    def from_env(cls, procs_per_worker: int = 1, env: dict | None = None) -> DistEnv:
        env = os.environ if env is None else env
        local_rank = int(env.get("LOCAL_RANK", 0))
        index = env.get("JOB_COMPLETION_INDEX")
        index = int(index) if index not in (None, "") else None
        if env.get("RANK") not in (None, ""):
            rank = int(env["RANK"])
        else:
            rank = (index or 0) * procs_per_worker + local_rank
        return cls(
            rank=rank,
            world_size=int(env.get("WORLD_SIZE", 1)),
            local_rank=local_rank,
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=int(env.get("MASTER_PORT", 29500)),
            completion_index=index,
        )
