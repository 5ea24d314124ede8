"""Storage side of the prior cache (``dreambooth_api.priorcache``): reading an image's entry and
checking the image against it, and writing an image then its entry.

Another job may have written the directory, so what is read there is untrusted: entries are
size-capped and parsed into ``PriorCacheEntry``, images size-capped and hashed.
"""

from __future__ import annotations

import hashlib

import torch
from dreambooth_api.files import FileError
from dreambooth_api.names import MAX_IMAGE_BYTES, prior_entry_name, prior_image_name
from dreambooth_api.priorcache import MAX_ENTRY_BYTES, PriorCacheEntry, entry_problem

from . import __version__, storage
from .errors import StorageNotFound, StorageTooLarge


def read_entry(uri: str, index: int) -> PriorCacheEntry | str:
    """The entry of image ``index`` under ``uri``, or why there is none that parses."""
    where = storage.join(uri, prior_entry_name(index))
    try:
        return PriorCacheEntry.loads(storage.read_bytes(where, limit=MAX_ENTRY_BYTES))
    except StorageNotFound:
        return f"{where} is missing"
    except (StorageTooLarge, FileError) as exc:
        return f"{where} is not a prior cache entry ({exc})"


def stored_problem(uri: str, index: int, digest: str) -> str | None:
    """Why the stored image ``index`` (image and entry both listed) may not be reused, or None."""
    entry = read_entry(uri, index)
    if isinstance(entry, str):
        return entry
    where = storage.join(uri, prior_image_name(index))
    try:
        data = storage.read_bytes(where, limit=MAX_IMAGE_BYTES)
    except StorageNotFound:
        return f"{where} is missing"
    except StorageTooLarge as exc:
        return str(exc)
    return entry_problem(entry, index, hashlib.sha256(data).hexdigest(), digest)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def store_image(uri: str, index: int, png: bytes, *, seed: int, digest: str, device: torch.device,
                dtype: torch.dtype) -> None:
    """Upload class image ``index``, then its entry: an entry proves its image is complete."""
    storage.write_bytes(storage.join(uri, prior_image_name(index)), png)
    entry = PriorCacheEntry(index=index, seed=seed, sha256=hashlib.sha256(png).hexdigest(),
                            size_bytes=len(png), settings_digest=digest, trainer_version=__version__,
                            device=device_name(device), dtype=str(dtype).removeprefix("torch."))
    storage.write_bytes(storage.join(uri, prior_entry_name(index)), entry.dumps(indent=2))
