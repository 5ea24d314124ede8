"""``dreambooth artifacts list|describe|download``: published adapters, their lineage and files.

Downloads check the adapter's bytes against the ModelArtifact's sha256 and size before they
are kept. Credentials come from a Secret in the artifact's namespace, else from the
environment; they are never printed.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import yaml
from dreambooth_api import GROUP, VERSION
from kubernetes.client.exceptions import ApiException
from tqdm import tqdm

from ..children import STORAGE_KEYS
from ..storage import Credentials, split_s3
from .kube import ARTIFACTS, CliError, Cluster, api_message

CHUNK = 1 << 20


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
            items = cluster.custom.list_cluster_custom_object(GROUP, VERSION, ARTIFACTS)["items"]
        else:
            items = cluster.custom.list_namespaced_custom_object(GROUP, VERSION, cluster.namespace, ARTIFACTS)["items"]
    except ApiException as err:
        raise CliError(api_message(err)) from None
    if not items:
        where = "any namespace" if all_namespaces else f"namespace {cluster.namespace}"
        print(f"No ModelArtifacts in {where}.", file=sys.stderr)
        return 0
    print(table(items, datetime.datetime.now(datetime.UTC), namespaces=all_namespaces))
    return 0


def describe(cluster: Cluster, name: str, output: str) -> int:
    artifact = cluster.get(ARTIFACTS, name)
    artifact.get("metadata", {}).pop("managedFields", None)
    if output == "json":
        print(json.dumps(artifact, indent=2))
    elif output == "yaml":
        print(yaml.safe_dump(artifact, sort_keys=False), end="")
    else:
        print(describe_text(artifact))
    return 0


# -- download ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    host: str  # host:port
    secure: bool


def endpoint_from(flag: str | None, insecure: bool, env: dict) -> Endpoint:
    """``--endpoint`` (host:port or URL), else ``$S3_ENDPOINT``; TLS unless --insecure,
    ``$S3_SECURE=false`` or an http:// URL."""
    value = flag or env.get("S3_ENDPOINT")
    if not value:
        raise CliError("no S3 endpoint: pass --endpoint HOST:PORT or set S3_ENDPOINT")
    if "://" in value:
        parsed = urlparse(value)
        return Endpoint(parsed.netloc, parsed.scheme == "https" and not insecure)
    secure = env.get("S3_SECURE", "true").lower() in ("1", "true", "yes")
    return Endpoint(value, secure and not insecure)


def credentials_from(cluster: Cluster, secret: str, env: dict) -> tuple[Credentials, str]:
    """The Secret's keys when it can be read, else the environment's; and where they came from."""
    try:
        data = cluster.core.read_namespaced_secret(secret, cluster.namespace).data or {}
        values = {k: base64.b64decode(data[k]).decode() for k in STORAGE_KEYS if k in data}
        if len(values) == len(STORAGE_KEYS):
            return Credentials(*(values[k] for k in STORAGE_KEYS)), f"Secret {cluster.namespace}/{secret}"
        reason = f"Secret {cluster.namespace}/{secret} lacks {', '.join(k for k in STORAGE_KEYS if k not in values)}"
    except ApiException as err:
        if err.status not in (403, 404):
            raise CliError(api_message(err)) from None
        reason = f"Secret {cluster.namespace}/{secret} " + ("not found" if err.status == 404 else "not readable")
    if all(env.get(k) for k in STORAGE_KEYS):
        return Credentials(*(env[k] for k in STORAGE_KEYS)), "the environment"
    raise CliError(f"no storage credentials: {reason}, and {' / '.join(STORAGE_KEYS)} are not set")


def local_names(artifact_spec: dict) -> list[tuple[str, str]]:
    """(URI, path relative to the output directory) of every file to fetch, adapter first.
    Samples keep their path under the artifact's folder (``samples/sample-00.png``)."""
    adapter = artifact_spec["uri"]
    folder = adapter.rsplit("/", 1)[0] + "/"
    files = [(adapter, adapter.rsplit("/", 1)[1])]
    if artifact_spec.get("metadataUri"):
        files.append((artifact_spec["metadataUri"], "metadata.json"))
    for uri in artifact_spec.get("sampleImages") or []:
        relative = uri[len(folder):] if uri.startswith(folder) else f"samples/{uri.rsplit('/', 1)[1]}"
        if ".." in PurePosixPath(relative).parts:
            raise CliError(f"refusing sample path {uri}")
        files.append((uri, relative))
    return files


class Fetcher:
    """Reads s3:// (with the given endpoint and credentials) and file:// URIs in chunks."""

    def __init__(self, endpoint: Endpoint | None, credentials: Credentials | None):
        self.client = None
        if endpoint and credentials:
            from minio import Minio

            self.client = Minio(endpoint.host, access_key=credentials.access_key,
                                secret_key=credentials.secret_key, secure=endpoint.secure)
            self.host = endpoint.host

    def chunks(self, uri: str):
        if urlparse(uri).scheme == "file":
            with open(urlparse(uri).path, "rb") as f:
                yield from iter(lambda: f.read(CHUNK), b"")
            return
        from minio.error import S3Error

        bucket, key = split_s3(uri)
        try:
            response = self.client.get_object(bucket, key)
        except S3Error as err:  # its message names the bucket and key, never the credentials
            raise CliError(f"{uri}: {err.code} from {self.host}") from None
        try:
            yield from response.stream(CHUNK)
        finally:
            response.close()
            response.release_conn()


def fetch(fetcher: Fetcher, uri: str, dest: Path, expected: tuple[str, int] | None = None) -> str:
    """Download ``uri`` to ``dest`` through a temporary file; with ``expected`` (sha256, size)
    the file is kept only if it matches. Returns the sha256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.part")
    digest, size = hashlib.sha256(), 0
    try:
        with open(part, "wb") as out, tqdm(total=expected[1] if expected else None, unit="B", unit_scale=True,
                                           desc=dest.name, file=sys.stderr, leave=False) as bar:
            for chunk in fetcher.chunks(uri):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                bar.update(len(chunk))
        if expected and (digest.hexdigest(), size) != expected:
            raise CliError(
                f"sha256 MISMATCH for {uri}: the ModelArtifact records sha256 {expected[0]} ({expected[1]} bytes), "
                f"the stored file has sha256 {digest.hexdigest()} ({size} bytes). It was not saved: the stored "
                "adapter is not the one that was published (tampered with or overwritten).")
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    return digest.hexdigest()


def download(cluster: Cluster, name: str, args, env: dict | None = None) -> int:
    env = os.environ if env is None else env
    spec = cluster.get(ARTIFACTS, name)["spec"]
    files = local_names(spec)
    if args.no_samples:
        files = files[:2]
    fetcher = Fetcher(None, None)
    if any(urlparse(uri).scheme == "s3" for uri, _ in files):
        endpoint = endpoint_from(args.endpoint, args.insecure, env)
        credentials, source = credentials_from(cluster, args.secret, env)
        print(f"storage {endpoint.host} ({'https' if endpoint.secure else 'http'}), credentials from {source}",
              file=sys.stderr)
        fetcher = Fetcher(endpoint, credentials)
    out = Path(args.output_dir or name)
    (adapter_uri, adapter_name), *rest = files
    fetch(fetcher, adapter_uri, out / adapter_name, expected=(spec["sha256"], int(spec["sizeBytes"])))
    print(f"{out / adapter_name}  sha256 {spec['sha256']} verified")
    for uri, relative in rest:
        fetch(fetcher, uri, out / relative)
        print(out / relative)
    print(f"load it: pipe.load_lora_weights({str(out)!r}, weight_name={adapter_name!r})")
    return 0

