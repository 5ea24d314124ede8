"""Training images: instance photos and class (prior) images, decoded once, and their batches.

Images are resized (shorter side) and center-cropped to the training resolution, then scaled to
[-1, 1] like diffusers' DreamBoothDataset. Every file is decoded before training starts, so an
unreadable image fails the job before anything is written. Batches are a pure function of the
step, so a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
import torch
from dreambooth_api.names import IMAGE_SUFFIXES, is_image, prior_image_name
from PIL import Image, ImageOps

from . import storage
from .errors import DataError


@dataclass
class ImageSet:
    uri: str
    names: list[str]
    sha256: list[str]
    pixels: torch.Tensor  # (N, 3, H, W) in [-1, 1], float32

    def __len__(self) -> int:
        return len(self.names)


def decode_image(data: bytes, resolution: int, where: str) -> torch.Tensor:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        image = ImageOps.exif_transpose(image).convert("RGB")
    except Exception as exc:
        raise DataError(f"{where} is not a readable image: {exc}") from None
    scale = resolution / min(image.size)
    size = (max(resolution, round(image.width * scale)), max(resolution, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.BILINEAR)
    left, top = (image.width - resolution) // 2, (image.height - resolution) // 2
    image = image.crop((left, top, left + resolution, top + resolution))
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def load_image_set(uri: str, names: list[str], resolution: int) -> ImageSet:
    pixels, digests = [], []
    for name in names:
        data = storage.read_bytes(storage.join(uri, name))
        digests.append(hashlib.sha256(data).hexdigest())
        pixels.append(decode_image(data, resolution, storage.join(uri, name)))
    return ImageSet(uri, names, digests, torch.stack(pixels))


def instance_names(uri: str) -> list[str]:
    names = [n for n in storage.list_files(uri) if is_image(n)]
    if not names:
        raise DataError(f"no instance images ({', '.join(IMAGE_SUFFIXES)}) under {uri}")
    return names


def load_instance_images(uri: str, resolution: int) -> ImageSet:
    return load_image_set(uri, instance_names(uri), resolution)


def load_class_images(uri: str, num_images: int, resolution: int) -> ImageSet:
    names = [prior_image_name(i) for i in range(num_images)]
    stored = set(storage.list_files(uri))
    missing = [n for n in names if n not in stored]
    if missing:
        raise DataError(
            f"{len(missing)} of {num_images} class images are missing under {uri} "
            f"(first: {missing[0]}); run the prior phase first"
        )
    return load_image_set(uri, names, resolution)


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
