"""``python -m dreambooth_trainer <prior|train|publish|tiny-model|schema>``.

Exit codes (``dreambooth_api.names``): 0 done; 1 unexpected error (retry may help); 2 invalid
input (config, data, model, credentials: retrying cannot help); 143 stopped by SIGTERM after
writing a checkpoint. ``train`` with ``PET_NNODES`` set (and no ``LOCAL_RANK``) is the torchrun
launcher of this pod's workers, passing their exit code on (see ``launch``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from dreambooth_api.files import PhaseReport
from dreambooth_api.names import EXIT_FAILED, EXIT_INTERRUPTED

from . import cpus, launch, result
from .config import DistEnv, JobConfig, load_config
from .errors import TrainerError
from .metrics import Metrics

log = logging.getLogger("dreambooth_trainer")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="dreambooth_trainer", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("prior", "generate this shard's class images"), ("train", "train the LoRA"),
                       ("publish", "upload the adapter, metadata and samples")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", help="job config JSON file (default: $DREAMBOOTH_JOB_CONFIG)")
        if name == "prior":
            p.add_argument("--shard", type=int, help="default: $JOB_COMPLETION_INDEX, else 0")
            p.add_argument("--shards", type=int, help="default: prior.shards")
    sub.add_parser("tiny-model", help="write a tiny random SD model").add_argument("path")
    sub.add_parser("schema", help="print the job config's JSON schema")
    return parser.parse_args(argv)


def run_phase(args, cfg: JobConfig, env: DistEnv, metrics: Metrics) -> dict:
    """This phase's typed summary, as the ``PhaseReport`` field named after the phase."""
    if args.command == "prior":
        from .prior import generate_priors

        shard = args.shard if args.shard is not None else env.completion_index or 0
        return {"prior": generate_priors(cfg, shard, args.shards or cfg.prior.shards, metrics=metrics)}
    if args.command == "train":
        from .train import StopFlag, train

        summary = train(cfg, env, metrics, StopFlag().install())
        return {"train": summary, "step": summary.step}
    from .publish import publish

    published = publish(cfg)
    return {"publish": published, "step": published.step}


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "tiny-model":
        from .tiny_model import write_tiny_model

        print(write_tiny_model(args.path))
        return 0
    if args.command == "schema":
        print(json.dumps(JobConfig.model_json_schema(by_alias=True), indent=2))
        return 0
    if args.command == "train" and launch.is_launcher():
        return launch.run(["train"] + (["--config", args.config] if args.config else []))
    from .train import Stopped

    report, code, metrics = {"phase": args.command}, 0, None
    try:
        cpus.size_threads()
        cfg = load_config(args.config)
        env = DistEnv.from_env(cfg.distributed.gpus_per_worker)
        report["rank"] = env.rank
        metrics = Metrics(args.command, env.rank)
        if env.local_rank == 0:
            metrics.serve(cfg.metrics_port)
        report.update(status="Succeeded", **run_phase(args, cfg, env, metrics))
    except Stopped as exc:
        report.update(status="Interrupted", reason="SIGTERM", message=str(exc), step=exc.step)
        code = EXIT_INTERRUPTED
    except TrainerError as exc:
        log.error("%s: %s", exc.reason, exc)
        report.update(status="Failed", reason=exc.reason, message=str(exc))
        code = exc.exit_code
    except Exception as exc:  # report it to the operator, then let the traceback show
        log.exception("unexpected error")
        report.update(status="Failed", reason="InternalError", message=f"{type(exc).__name__}: {exc}")
        code = EXIT_FAILED
    finally:
        if metrics:
            metrics.close()
    result.emit(PhaseReport(**report))
    launch.record_exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
