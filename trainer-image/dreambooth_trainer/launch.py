"""``python -m dreambooth_trainer train`` as the pod's torchrun, passing the workers' exit code on.

torchrun exits 1 whenever a worker fails, which would hide exit code 2 (invalid input: do not
retry) and 143 (SIGTERM after a checkpoint: resume, do not count it) from the Job's
podFailurePolicy. So the image's entrypoint is the launcher: with ``PET_NNODES`` set (the
training pods' ``PET_*`` settings, which ``torch.distributed.run`` reads) and no
``LOCAL_RANK`` (not a worker itself), it runs ``torch.distributed.run`` in-process on
``-m dreambooth_trainer train``. Each worker records its exit code in a directory the launcher
made, since torchrun does not report the codes of workers it stopped itself (on SIGTERM).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from dreambooth_api.names import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID_INPUT

log = logging.getLogger(__name__)

EXIT_DIR_ENV = "DREAMBOOTH_EXIT_DIR"


def is_launcher(env=None) -> bool:
    env = os.environ if env is None else env
    return bool(env.get("PET_NNODES")) and "LOCAL_RANK" not in env


def record_exit(code: int) -> None:
    """In a worker started by ``run``: leave this process's exit code for the launcher."""
    directory = os.environ.get(EXIT_DIR_ENV)
    if directory and os.path.isdir(directory):
        Path(directory, f"local-rank-{os.environ.get('LOCAL_RANK', 0)}").write_text(str(code))


def exit_code(codes: list[int]) -> int:
    """The pod's exit code from its workers' (those that reported one)."""
    if EXIT_INVALID_INPUT in codes:
        return EXIT_INVALID_INPUT
    if codes and all(c == EXIT_INTERRUPTED for c in codes):
        return EXIT_INTERRUPTED
    return EXIT_FAILED


def run(worker_args: list[str]) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args
    from torch.distributed.run import run as torchrun

    args = parse_args(["-m", "dreambooth_trainer", *worker_args])
    with tempfile.TemporaryDirectory(prefix="dreambooth-exit-") as tmp:
        os.environ[EXIT_DIR_ENV] = tmp
        try:
            torchrun(args)
            return 0
        except ChildFailedError as exc:
            codes = [f.exitcode for f in exc.failures.values()]
        except SignalException as exc:
            log.warning("launcher got signal %s; the workers were stopped with it", exc.sigval)
            codes = []
        finally:
            del os.environ[EXIT_DIR_ENV]
        codes += [int(p.read_text()) for p in Path(tmp).glob("local-rank-*")]
    code = exit_code(codes)
    log.info("workers exited %s: exit code %d", sorted(codes), code)
    return code
