"""The content-addressed prior cache: class images stored once per settings, reused by later jobs.

A job's class images depend only on its ``PriorSettings`` and each image's global index, so the
images live under ``<prefix>/prior-cache/<settings digest>/`` (the operator picks the prefix:
its namespace's by default, "" for one cache per bucket) and every job with the same settings
uses the same directory, whatever its ``numImages``. Beside ``class-000007.png`` the trainer
writes ``class-000007.json``, a ``PriorCacheEntry`` with the image's sha256, after the image:
an image counts as cached only when its entry is there too, and is reused only when its bytes
still have the entry's sha256. Pure: names and models here, storage I/O in the trainer.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import ClassVar

from pydantic import Field

from .files import MAX_COUNT, SHA256, ContractFile, PriorSettings
from .names import MAX_IMAGE_BYTES, prior_entry_name, prior_image_name

PRIOR_CACHE_DIR = "prior-cache"
# An entry is a dozen short fields; anything larger is not one.
MAX_ENTRY_BYTES = 4096


def settings_digest(settings: PriorSettings) -> str:
    """The content address of class images made with ``settings``: the sha256 (hex) of their
    canonical JSON (camelCase keys sorted, no whitespace, unset optionals left out). Equal
    settings give equal digests however they were built; any change of a field changes it."""
    fields = settings.model_dump(mode="json", by_alias=True, exclude_none=True)
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def cache_key(prefix: str, digest: str) -> str:
    """The key (with a trailing slash) of the images of ``digest``: ``<prefix>/prior-cache/<digest>/``,
    or ``prior-cache/<digest>/`` for a cache at the bucket's root (``prefix`` "")."""
    if not re.fullmatch(SHA256, digest):
        raise ValueError(f"not a settings digest: {digest!r}")
    return "/".join(p for p in (prefix.strip("/"), PRIOR_CACHE_DIR, digest) if p) + "/"


class PriorCacheEntry(ContractFile):
    """``class-<index>.json``: what the trainer uploaded as ``class-<index>.png``, written after it."""

    max_bytes: ClassVar[int] = MAX_ENTRY_BYTES

    index: int = Field(ge=0, le=MAX_COUNT)
    seed: int = Field(ge=0, description="The image's own seed (PriorSettings.seedDerivation).")
    sha256: str = Field(pattern=SHA256, description="Of the PNG's bytes as uploaded.")
    size_bytes: int = Field(ge=0, le=MAX_IMAGE_BYTES)
    settings_digest: str = Field(pattern=SHA256)
    trainer_version: str = Field(max_length=64)
    # The settings fix the dtype policy; these say what it chose on the machine that made it.
    device: str = Field(max_length=256, description='e.g. "cpu" or "cuda (NVIDIA H100 80GB HBM3)"')
    dtype: str = Field(max_length=32, description='e.g. "float32" or "bfloat16"')


def cached_indices(names: Iterable[str], num_images: int) -> list[int]:
    """The indices below ``num_images`` whose image and entry are both among ``names`` (a
    listing of the cache directory). The entry is written after the image, so an image without
    one may be half uploaded and does not count."""
    present = set(names)
    return [i for i in range(num_images) if prior_image_name(i) in present and prior_entry_name(i) in present]


def entry_problem(entry: PriorCacheEntry, index: int, sha256: str, digest: str) -> str | None:
    """Why the stored image ``index`` with bytes of ``sha256`` is not the one ``entry`` (from the
    directory of ``digest``) describes, or None when it is."""
    name = prior_image_name(index)
    if entry.index != index or entry.settings_digest != digest:
        return (f"{name} in the prior cache has the entry of another image (index {entry.index}, "
                f"settings {entry.settings_digest})")
    if entry.sha256 != sha256:
        return f"{name} in the prior cache is corrupt (sha256 {sha256} != entry {entry.sha256})"
    return None
