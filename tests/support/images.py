"""The images `make images` builds (hack/images.sh), named as the chart's defaults name them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "dreambooth-operator"


def chart_default(*keys: str) -> str:
    """``repository:tag`` of an image value of the chart (``image`` or ``trainer.image``)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for key in keys:
        values = values[key]
    tag = values["tag"] or yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    return f"{values['repository']}:{tag}"


OPERATOR_IMAGE = chart_default("image")
TRAINER_IMAGE = chart_default("trainer", "image")


def require_built(*images: str) -> None:
    missing = [image for image in images
               if subprocess.run(["podman", "image", "exists", image], capture_output=True).returncode != 0]
    if missing:
        raise RuntimeError(f"images not built: {missing}; `make images` builds them (`make test` does first)")
