"""The ``dreambooth`` command (also ``kubectl dreambooth``): submit and watch DreamBoothJobs,
list, describe and download ModelArtifacts, run a job on this machine without a cluster, or
print a platform's keyless-storage settings (``admin``).

Exit codes: 0 success; 1 failure (refused spec, failed job, sha256 mismatch, …) with a
one-line reason on stderr; 2 usage errors and ``watch --timeout``; 130 interrupted.
"""

from __future__ import annotations

import os
import sys

import urllib3

from .args import parse_args
from .kube import CliError


def _prog(argv0: str) -> str:
    return "kubectl dreambooth" if os.path.basename(argv0).startswith("kubectl-") else "dreambooth"


def dispatch(args) -> int:
    if args.command == "run":
        from .run import run

        return run(args)
    if args.command == "admin":
        from .admin import minio_policy

        return minio_policy(args)
    from .kube import connect

    cluster = connect(args.kubeconfig, args.context, args.namespace)
    if args.command == "submit":
        from .submit import submit

        return submit(cluster, args)
    if args.command == "watch":
        from .watch import watch

        return watch(cluster, args.name, args.timeout)
    from . import artifacts

    if args.verb == "list":
        return artifacts.list_artifacts(cluster, args.all_namespaces)
    if args.verb == "describe":
        return artifacts.describe(cluster, args.name, args.output)
    return artifacts.download(cluster, args.name, args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, prog=_prog(sys.argv[0]))
    try:
        return dispatch(args)
    except CliError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except urllib3.exceptions.HTTPError as err:
        print(f"error: cannot reach the API server: {type(err).__name__}: {getattr(err, 'reason', err)}",
              file=sys.stderr)
        return 1
