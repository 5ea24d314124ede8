"""``dreambooth artifacts list|describe|download``: published adapters, their lineage and files.

Downloads check the adapter's bytes against the ModelArtifact's sha256 and size before they
are kept. Credentials (credentials.py) come from a Secret in the artifact's namespace or the
environment, or, keyless, from a token of the namespace's workload ServiceAccount; they are
never printed.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import yaml
from dreambooth_api import GROUP, VERSION
from dreambooth_api.files import ArtifactMetadata, FileError
from dreambooth_api.names import METADATA_FILE, MODELARTIFACTS
from kubernetes.client.exceptions import ApiException

from .credentials import open_storage
from .kube import CliError, Cluster, api_message
from .s3 import Fetcher, fetch

# -- list and describe -------------------------------------------------------------------------

def _age(created: str | None, now: datetime.datetime) -> str:
    if not created:
        return "?"
    then = datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    seconds = int((now - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def table(artifacts: list[dict], now: datetime.datetime, namespaces: bool = False) -> str:
    """kubectl-style columns of ModelArtifacts."""
    header = (["NAMESPACE"] if namespaces else []) + ["NAME", "PHASE", "BASE MODEL", "SIZE", "JOB", "AGE"]
    rows = [header]
    for a in artifacts:
        spec, meta = a.get("spec") or {}, a.get("metadata") or {}
        rows.append(([meta.get("namespace", "")] if namespaces else []) + [
            meta.get("name", ""),
            (a.get("status") or {}).get("phase") or "-",
            (spec.get("baseModel") or {}).get("uri", ""),
            _size(spec.get("sizeBytes")),
            (spec.get("sourceJob") or {}).get("name", "-"),
            _age(meta.get("creationTimestamp"), now),
        ])
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    return "\n".join("   ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def describe_text(artifact: dict) -> str:
    """A readable summary: what the adapter is, where its files are, how it was made."""
    spec, meta, status = artifact.get("spec") or {}, artifact.get("metadata") or {}, artifact.get("status") or {}
    base = spec.get("baseModel") or {}
    lines = [
        f"Name:         {meta.get('name')}",
        f"Namespace:    {meta.get('namespace')}",
        f"Phase:        {status.get('phase') or '-'}",
        f"Format:       {spec.get('format')}",
        f"URI:          {spec.get('uri')}",
        f"SHA-256:      {spec.get('sha256')}",
        f"Size:         {_size(spec.get('sizeBytes'))} ({spec.get('sizeBytes')} bytes)",
        f"Base model:   {base.get('uri')}" + (f" @ {base['revision']}" if base.get("revision") else ""),
    ]
    prompts = spec.get("prompts") or {}
    if prompts:
        lines.append(f"Prompts:      instance {prompts.get('instance')!r}"
                     + (f", class {prompts['class']!r}" if prompts.get("class") else ""))
    job = spec.get("sourceJob")
    if job:
        lines.append(f"Source job:   {job.get('name')} (uid {job.get('uid')})")
    if spec.get("metadataUri"):
        lines.append(f"Metadata:     {spec['metadataUri']}")
    if spec.get("metrics"):
        lines.append("Metrics:      " + ", ".join(f"{k} {v:g}" for k, v in sorted(spec["metrics"].items())))
    hyper = spec.get("hyperparameters") or {}
    if hyper:
        keys = ("maxSteps", "resolution", "learningRate", "batchSize", "lora", "mixedPrecision", "worldSize")
        lines.append("Training:     " + ", ".join(f"{k} {json.dumps(hyper[k])}" for k in keys if k in hyper))
    for i, uri in enumerate(spec.get("sampleImages") or []):
        lines.append(f"{'Samples:' if i == 0 else ''}".ljust(14) + uri)
    for c in status.get("conditions") or []:
        lines.append(f"Condition:    {c.get('type')}={c.get('status')} {c.get('reason', '')}: {c.get('message', '')}")
    return "\n".join(lines)


def list_artifacts(cluster: Cluster, all_namespaces: bool) -> int:
    try:
        if all_namespaces:
            items = cluster.custom.list_cluster_custom_object(GROUP, VERSION, MODELARTIFACTS)["items"]
        else:
            items = cluster.custom.list_namespaced_custom_object(GROUP, VERSION, cluster.namespace,
                                                                 MODELARTIFACTS)["items"]
    except ApiException as err:
        raise CliError(api_message(err)) from None
    if not items:
        where = "any namespace" if all_namespaces else f"namespace {cluster.namespace}"
        print(f"No ModelArtifacts in {where}.", file=sys.stderr)
        return 0
    print(table(items, datetime.datetime.now(datetime.UTC), namespaces=all_namespaces))
    return 0


def describe(cluster: Cluster, name: str, output: str) -> int:
    artifact = cluster.get(MODELARTIFACTS, name)
    artifact.get("metadata", {}).pop("managedFields", None)
    if output == "json":
        print(json.dumps(artifact, indent=2))
    elif output == "yaml":
        print(yaml.safe_dump(artifact, sort_keys=False), end="")
    else:
        print(describe_text(artifact))
    return 0


# -- download ----------------------------------------------------------------------------------

def local_path(relative: str, uri: str) -> PurePosixPath:
    """``relative`` (from an object key) as a path under the output directory. The ModelArtifact
    and its keys are the tenant's to write: a path that could land anywhere else is refused
    (CliError naming ``uri``), not cleaned up into something that looks safe."""
    parts = relative.split("/")
    problem = ("is empty" if not relative
               else "is absolute" if relative.startswith("/")
               else "holds a backslash" if "\\" in relative
               else "holds a control character" if any(ord(c) < 32 or ord(c) == 127 for c in relative)
               else "has an empty segment" if "" in parts
               else "has a '.' or '..' segment" if {".", ".."} & set(parts)
               else None)
    if problem:
        raise CliError(f"refusing {uri}: its local path {relative!r} {problem}")
    return PurePosixPath(relative)


def local_names(artifact_spec: dict) -> list[tuple[str, PurePosixPath]]:
    """(URI, path relative to the output directory) of every file to fetch, adapter first.
    Samples keep their path under the artifact's folder (``samples/sample-00.png``)."""
    adapter = artifact_spec["uri"]
    folder = adapter.rsplit("/", 1)[0] + "/"
    files = [(adapter, adapter.rsplit("/", 1)[-1])]
    if artifact_spec.get("metadataUri"):
        files.append((artifact_spec["metadataUri"], METADATA_FILE))
    for uri in artifact_spec.get("sampleImages") or []:
        files.append((uri, uri[len(folder):] if uri.startswith(folder) else f"samples/{uri.rsplit('/', 1)[-1]}"))
    paths = [(uri, local_path(relative, uri)) for uri, relative in files]
    taken: dict[PurePosixPath, str] = {}
    for uri, path in paths:  # a sample must not overwrite the verified adapter or metadata.json
        if path in taken:
            raise CliError(f"refusing {uri}: its local path {str(path)!r} is also {taken[path]}'s")
        taken[path] = uri
    return paths


def destination(out: Path, relative: PurePosixPath, uri: str) -> Path:
    """Where ``relative`` is written: under ``out`` once symbolic links already there are
    followed, else CliError (a link inside the output directory must not lead out of it)."""
    root = out.resolve()
    dest = root.joinpath(*relative.parts)
    if not dest.resolve().is_relative_to(root):
        raise CliError(f"refusing {uri}: {out / relative} leads out of {out} through a symbolic link "
                       f"(to {dest.resolve()})")
    return dest


def check_metadata(path: Path, artifact_spec: dict) -> ArtifactMetadata:
    """The downloaded metadata.json, parsed; it must describe the adapter just verified."""
    try:
        meta = ArtifactMetadata.loads(path.read_bytes())
    except FileError as err:
        path.unlink()
        raise CliError(f"{artifact_spec.get('metadataUri')} is not an artifact's metadata.json: {err}") from None
    if (meta.sha256, meta.size_bytes) != (artifact_spec["sha256"], int(artifact_spec["sizeBytes"])):
        path.unlink()
        raise CliError(f"{artifact_spec.get('metadataUri')} describes another adapter (sha256 {meta.sha256}, "
                       f"{meta.size_bytes} bytes), not the ModelArtifact's; it was not kept")
    return meta


def download(cluster: Cluster, name: str, args, env: dict | None = None) -> int:
    env = os.environ if env is None else env
    spec = cluster.get(MODELARTIFACTS, name)["spec"]
    (adapter_uri, adapter_name), *rest = local_names(spec)
    if args.no_samples:
        rest = [(uri, relative) for uri, relative in rest if relative == PurePosixPath(METADATA_FILE)]
    fetcher = Fetcher()
    if any(urlparse(uri).scheme == "s3" for uri in [adapter_uri, *(uri for uri, _ in rest)]):
        fetcher = Fetcher(open_storage(cluster, cluster.namespace, args, env))
    out = Path(args.output_dir or name)
    # Every path is checked before anything is written: a refused one leaves the output as it was.
    adapter_dest, *dests = [destination(out, relative, uri) for uri, relative in [(adapter_uri, adapter_name), *rest]]
    fetch(fetcher, adapter_uri, adapter_dest, expected=(spec["sha256"], int(spec["sizeBytes"])))
    print(f"{out / adapter_name}  sha256 {spec['sha256']} verified")
    for (uri, relative), dest in zip(rest, dests, strict=True):
        fetch(fetcher, uri, dest)
        if relative == PurePosixPath(METADATA_FILE):
            meta = check_metadata(dest, spec)
            print(f"{out / relative}  lineage: job {meta.job.name}, base model {meta.base_model.uri}, "
                  f"trainer {meta.trainer_version}")
        else:
            print(out / relative)
    print(f"load it: pipe.load_lora_weights({str(out)!r}, weight_name={str(adapter_name)!r})")
    return 0
