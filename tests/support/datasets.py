"""What a tenant puts in storage before its first job: the cloody photos and a base model (the
tiny Stable Diffusion that `dreambooth_trainer tiny-model` builds from configs, no download)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CLOODY_PREFIX = "datasets/cloody-cat"
TINY_MODEL_PREFIX = "models/tiny-sd"


def upload_tree(client, bucket: str, root: Path, prefix: str) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        client.put_object(bucket, f"{prefix}/{path.relative_to(root).as_posix()}", io.BytesIO(data), len(data))


def upload_cloody_and_tiny_model(client, bucket: str, workdir: Path, prefix: str = "") -> None:
    """The bucket (made if missing) with the photos and model the examples' tiny overlays name,
    under ``prefix`` (a keyless tenant's own, whose jobs can read nothing else)."""
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    root = f"{prefix.rstrip('/')}/" if prefix else ""
    upload_tree(client, bucket, REPO_ROOT / "examples/data/cloody-cat", root + CLOODY_PREFIX)
    model = workdir / "tiny-sd"
    if not model.exists():
        subprocess.run([sys.executable, "-m", "dreambooth_trainer", "tiny-model", str(model)], check=True,
                       capture_output=True)
    upload_tree(client, bucket, model, root + TINY_MODEL_PREFIX)
