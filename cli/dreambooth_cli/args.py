"""The command line: ``dreambooth <submit|watch|artifacts|run|admin>`` (also ``kubectl dreambooth``)."""

from __future__ import annotations

import argparse

from dreambooth_api.keyless import DEFAULT_AUDIENCE, DEFAULT_WORKLOAD_SERVICE_ACCOUNT

DEFAULT_SECRET = "dreambooth-storage"
DEFAULT_BUCKET = "dreambooth"  # the operator's storage_bucket default


def _cluster_flags(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """--kubeconfig, --context, -n: accepted before and after the subcommand, as kubectl does."""
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--kubeconfig", default=default, metavar="PATH",
                        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, else in-cluster)")
    parser.add_argument("--context", default=default, help="kubeconfig context (default: the current one)")
    parser.add_argument("-n", "--namespace", default=default,
                        help="namespace (default: the context's, else 'default')")


def _storage_flags() -> argparse.ArgumentParser:
    """How commands that read or write the object store reach it, in either storage mode."""
    parent = argparse.ArgumentParser(add_help=False)
    g = parent.add_argument_group(
        "storage", "Static mode: the keys in the Secret --secret of the namespace (AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY), else the same variables in the environment. Keyless mode (--keyless or "
        "DREAMBOOTH_STORAGE_MODE=keyless): a short-lived token of the namespace's workload ServiceAccount "
        "(needs create serviceaccounts/token there) exchanged at the endpoint's STS; no Secret is read.")
    g.add_argument("--endpoint", help="S3 endpoint host:port or URL (default: $S3_ENDPOINT)")
    g.add_argument("--insecure", action="store_true", help="plain HTTP (default: $S3_SECURE, else TLS)")
    g.add_argument("--secret", default=DEFAULT_SECRET,
                   help=f"static: Secret with the storage credentials (default: {DEFAULT_SECRET})")
    g.add_argument("--keyless", action="store_true", help="keyless mode (default: $DREAMBOOTH_STORAGE_MODE)")
    g.add_argument("--service-account", default=DEFAULT_WORKLOAD_SERVICE_ACCOUNT, metavar="NAME",
                   help=f"keyless: the workload ServiceAccount (default: {DEFAULT_WORKLOAD_SERVICE_ACCOUNT})")
    g.add_argument("--audience", default=DEFAULT_AUDIENCE,
                   help=f"keyless: the tokens' audience, MinIO's OpenID client ID (default: {DEFAULT_AUDIENCE})")
    g.add_argument("--role-arn", metavar="ARN", help="keyless: RoleArn sent to STS (default: $AWS_ROLE_ARN, else none)")
    return parent


def _submit_parser(sub, common, storage) -> None:
    p = sub.add_parser("submit", parents=[common, storage], help="create a DreamBoothJob from a file or from flags",
                       description="Create a DreamBoothJob. Flags given with -f override the file's fields. "
                       "With --photos, the photos are uploaded first and become the job's instance data.")
    p.add_argument("-f", "--filename", metavar="FILE", help="DreamBoothJob YAML ('-': stdin)")
    p.add_argument("--name", help="job name (DNS-1035 label)")
    p.add_argument("--instance-prompt", help='e.g. "a photo of sks cat"')
    data = p.add_mutually_exclusive_group()
    data.add_argument("--data-uri", help="s3:// or file:// prefix holding the subject photos")
    data.add_argument("--photos", metavar="DIR",
                      help="upload the photos in DIR to s3://BUCKET/PREFIX/data/<name>/ (files already there "
                      "unchanged are skipped) and use that as the data URI")
    p.add_argument("--bucket", default=DEFAULT_BUCKET, help=f"--photos: bucket (default: {DEFAULT_BUCKET})")
    p.add_argument("--prefix", help="--photos: prefix in the bucket (default: the namespace; keyless: "
                   "tenants/system:serviceaccount:<namespace>:<service account>)")
    p.add_argument("--prune", action="store_true",
                   help="--photos: delete photos under the data URI that are not in DIR (otherwise refused)")
    p.add_argument("--class-prompt", help='enables prior preservation, e.g. "a photo of a cat"')
    p.add_argument("--num-class-images", type=int, metavar="N", help="prior images to generate")
    p.add_argument("--shards", type=int, metavar="N", help="GPU pods generating the prior images")
    p.add_argument("--base-model", metavar="URI", help="hf://org/name, s3://… or file:///… (a diffusers model)")
    p.add_argument("--revision", help="hub revision of an hf:// base model")
    p.add_argument("--steps", type=int, metavar="N", help="training steps (training.maxSteps)")
    p.add_argument("--resolution", type=int, metavar="PX", help="training resolution")
    p.add_argument("--learning-rate", type=float, metavar="LR")
    p.add_argument("--rank", type=int, metavar="R", help="LoRA rank (alpha follows it)")
    p.add_argument("--workers", type=int, metavar="W", help="training worker pods")
    p.add_argument("--gpus-per-worker", type=int, metavar="G")
    p.add_argument("--backend", choices=("accelerate", "deepspeed"))
    p.add_argument("--validation-prompt", action="append", metavar="PROMPT",
                   help="prompt rendered with the adapter (repeatable)")
    p.add_argument("--artifact-name", help="ModelArtifact to publish (default: <name>-lora)")
    p.add_argument("--queue", metavar="NAME", help="Kueue LocalQueue (spec.queueName)")
    p.add_argument("--dry-run", action="store_true",
                   help="have the apiserver validate the job without creating it; print it as YAML "
                   "(--photos: say what would be uploaded, upload nothing)")


def _artifacts_parser(sub, common, storage) -> None:
    p = sub.add_parser("artifacts", help="list, describe and download ModelArtifacts")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="{list,describe,download}")
    ls = verbs.add_parser("list", parents=[common], help="ModelArtifacts of a namespace")
    ls.add_argument("-A", "--all-namespaces", action="store_true")
    describe = verbs.add_parser("describe", parents=[common], help="one artifact: files, lineage, metrics")
    describe.add_argument("name")
    describe.add_argument("-o", "--output", choices=("text", "yaml", "json"), default="text")
    download = verbs.add_parser(
        "download", parents=[common, storage], help="fetch the adapter, metadata.json and samples; verify the sha256",
        description="Download an artifact's files from S3 and check the adapter against the "
        "ModelArtifact's sha256.")
    download.add_argument("name")
    download.add_argument("-o", "--output-dir", metavar="DIR", help="default: ./<artifact name>")
    download.add_argument("--no-samples", action="store_true", help="only the adapter and metadata.json")


def _run_parser(sub) -> None:
    p = sub.add_parser(
        "run", help="run a job on this machine, without a cluster",
        description="Run a DreamBoothJob here: the trainer's prior (each shard), train and publish "
        "entrypoints as the pods run them, with storage under --workdir; then a PNG grid of samples "
        "before and after fine-tuning next to the instance photos.")
    p.add_argument("-f", "--filename", metavar="FILE", required=True, help="DreamBoothJob YAML")
    p.add_argument("--workdir", metavar="DIR", help="storage, logs and the grid (default: ./<job name>-local)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--tiny", dest="mode", action="store_const", const="tiny",
                      help="tiny random model at 64 px, few steps: minutes on a CPU (default without CUDA)")
    mode.add_argument("--real", dest="mode", action="store_const", const="real",
                      help="the job's own base model (e.g. SD 1.5 from the hub; needs a GPU, hub "
                      "access and $HF_TOKEN for gated models; default with CUDA)")
    p.add_argument("--data", metavar="DIR", help="subject photos (default: from the spec's dataUri)")
    p.add_argument("--steps", type=int, metavar="N", help="override training.maxSteps")


def _admin_parser(sub) -> None:
    p = sub.add_parser("admin", help="platform set-up")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="{minio-policy}")
    policy = verbs.add_parser(
        "minio-policy", help="MinIO's role policy for keyless storage (JSON), or with --env its settings",
        description="Print the policy of MinIO's OpenID role for keyless storage: each namespace's workload "
        "ServiceAccount reaches tenants/system:serviceaccount:<namespace>:<name>/ of the bucket, the operator "
        "reads what it needs. With --env: MinIO's environment for the cluster's ServiceAccount issuer and the "
        "role ARN to give the operator, the pods and the CLI.")
    policy.add_argument("--bucket", default=DEFAULT_BUCKET, help=f"default: {DEFAULT_BUCKET}")
    policy.add_argument("--operator-service-account", required=True, metavar="NAMESPACE/NAME",
                        help="the operator's ServiceAccount")
    policy.add_argument("--workload-service-account", default=DEFAULT_WORKLOAD_SERVICE_ACCOUNT, metavar="NAME",
                        help=f"tenants' workload ServiceAccount (default: {DEFAULT_WORKLOAD_SERVICE_ACCOUNT})")
    policy.add_argument("--shared-prior-cache", action="store_true",
                        help="let every tenant's pods read and write prior-cache/ at the bucket's root (the operator's "
                        "priorCacheScope=cluster); class images only, but one tenant can write what others read")
    policy.add_argument("--env", action="store_true", help="print MinIO's environment instead of the policy")
    policy.add_argument("--issuer", metavar="URL", help="--env: the ServiceAccount issuer (kubectl get --raw "
                        "/.well-known/openid-configuration shows it)")
    policy.add_argument("--audience", default=DEFAULT_AUDIENCE, help=f"--env: client ID (default: {DEFAULT_AUDIENCE})")
    policy.add_argument("--policy-name", default="dreambooth-tenant",
                        help="--env: the name the policy is created under (default: dreambooth-tenant)")


def build_parser(prog: str = "dreambooth") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Submit and follow DreamBoothJobs, fetch their ModelArtifacts, or run a job locally.")
    _cluster_flags(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _cluster_flags(common, suppress=True)
    storage = _storage_flags()
    sub = parser.add_subparsers(dest="command", required=True, metavar="{submit,watch,artifacts,run,admin}")
    _submit_parser(sub, common, storage)
    watch = sub.add_parser("watch", parents=[common], help="follow a job's progress until it ends",
                           description="Progress of a DreamBoothJob from its status, until it succeeds "
                           "(exit 0) or fails (exit 1).")
    watch.add_argument("name")
    watch.add_argument("--timeout", type=float, metavar="SECONDS", help="give up after this long (exit 2)")
    _artifacts_parser(sub, common, storage)
    _run_parser(sub)
    _admin_parser(sub)
    return parser


def parse_args(argv: list[str] | None, prog: str = "dreambooth") -> argparse.Namespace:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.command == "submit" and not args.filename:
        missing = [flag for flag, value in (("--name", args.name), ("--instance-prompt", args.instance_prompt),
                                            ("--data-uri/--photos", args.data_uri or args.photos)) if not value]
        if missing:
            parser.error(f"submit needs -f FILE or {', '.join(missing)}")
    if args.command == "admin":
        namespace, _, name = args.operator_service_account.partition("/")
        if not namespace or not name or "/" in name:
            parser.error("--operator-service-account takes NAMESPACE/NAME")
    for name in ("steps", "num_class_images", "shards", "workers", "gpus_per_worker", "rank", "resolution"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args
