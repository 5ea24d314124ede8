"""Training images: instance photos and class (prior) images, decoded once, and their batches.

Images are resized (shorter side) and center-cropped to the training resolution, then scaled to
[-1, 1] like diffusers' DreamBoothDataset; ``photos`` decodes them (16-bit grey, transparency on
white, a pixel budget). Every file is decoded before training starts, so an unreadable or
oversized image fails the job before anything is written. Batches are a pure function of the
step, so a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from dreambooth_api.names import (
    IMAGE_SUFFIXES,
    MAX_IMAGE_BYTES,
    MAX_INSTANCE_IMAGES,
    is_image,
    prior_entry_name,
    prior_image_name,
)
from dreambooth_api.priorcache import entry_problem
from PIL import Image

from . import photos, prior_cache, storage
from .errors import DataError, StorageTooLarge


@dataclass
class ImageSet:
    uri: str
    names: list[str]
    sha256: list[str]
    pixels: torch.Tensor  # (N, 3, H, W) in [-1, 1], float32

    def __len__(self) -> int:
        return len(self.names)


def decode_image(data: bytes, resolution: int, where: str) -> torch.Tensor:
    """One photo as a (3, resolution, resolution) tensor in [-1, 1]: opened by ``photos.open_rgb``
    (16-bit grey by its level, transparency on white, above the pixel budget refused), its
    shorter side scaled to ``resolution`` and the centre cropped."""
    image = photos.open_rgb(data, where)
    # The centre square in the photo's own pixels, resized in one step: the same picture as
    # resizing the whole photo and cropping, without a huge intermediate for a long, thin one.
    side = min(image.size)
    left, top = (image.width - side) / 2, (image.height - side) / 2
    image = image.resize((resolution, resolution), Image.Resampling.BILINEAR,
                         box=(left, top, left + side, top + side))
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def load_image_set(uri: str, names: list[str], resolution: int) -> ImageSet:
    pixels, digests = [], []
    for name in names:
        where = storage.join(uri, name)
        try:
            data = storage.read_bytes(where, limit=MAX_IMAGE_BYTES)
        except StorageTooLarge:
            raise DataError(f"{where} is more than {MAX_IMAGE_BYTES >> 20} MiB; photos must be smaller") from None
        digests.append(hashlib.sha256(data).hexdigest())
        pixels.append(decode_image(data, resolution, where))
    return ImageSet(uri, names, digests, torch.stack(pixels))


def instance_names(uri: str) -> list[str]:
    names = [n for n in storage.list_files(uri) if is_image(n)]
    if not names:
        raise DataError(f"no instance images ({', '.join(IMAGE_SUFFIXES)}) under {uri}")
    if len(names) > MAX_INSTANCE_IMAGES:
        raise DataError(f"{len(names)} instance images under {uri}; at most {MAX_INSTANCE_IMAGES}")
    return names


def load_instance_images(uri: str, resolution: int) -> ImageSet:
    return load_image_set(uri, instance_names(uri), resolution)


def load_class_images(uri: str, num_images: int, resolution: int, digest: str) -> ImageSet:
    """Class images 0..num_images-1 under ``uri``, each checked against its prior cache entry
    (when it has one) for ``digest``, the settings' digest: a mismatch is a DataError naming the
    file, since training on another picture than the one recorded would go unnoticed."""
    names = [prior_image_name(i) for i in range(num_images)]
    stored = set(storage.list_files(uri))
    missing = [n for n in names if n not in stored]
    if missing:
        raise DataError(
            f"{len(missing)} of {num_images} class images are missing under {uri} "
            f"(first: {missing[0]}); run the prior phase first"
        )
    images = load_image_set(uri, names, resolution)
    for index, sha256 in enumerate(images.sha256):
        if prior_entry_name(index) not in stored:
            continue
        entry = prior_cache.read_entry(uri, index)
        problem = entry if isinstance(entry, str) else entry_problem(entry, index, sha256, digest)
        if problem:
            raise DataError(f"{problem}; run the prior phase again to regenerate it")
    return images


def batch_indices(n: int, first: int, count: int, seed: int) -> list[int]:
    """Items at positions first..first+count of an endless stream of shuffled epochs over n."""
    out, perms = [], {}
    for position in range(first, first + count):
        epoch, offset = divmod(position, n)
        if epoch not in perms:
            g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            perms[epoch] = torch.randperm(n, generator=g).tolist()
        out.append(perms[epoch][offset])
    return out


def stream_position(step: int, micro: int, accumulation: int, rank: int, world: int, batch: int) -> int:
    """Where this process's micro-batch starts in the global sample stream."""
    return ((step * accumulation + micro) * world + rank) * batch
