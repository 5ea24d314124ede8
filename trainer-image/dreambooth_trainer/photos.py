"""Tenant photos as 8-bit RGB pictures: the one opener the trainer and the CLI decode images with.

- Only the formats of the suffixes a tenant may upload (``names.IMAGE_SUFFIXES``) are parsed,
  whatever a file is named: Pillow would otherwise sniff and parse any of its formats (EPS even
  runs Ghostscript).
- A picture of more than ``names.MAX_IMAGE_PIXELS`` pixels is refused from its header, before
  any pixel is decoded (``Image.open`` reads only the header; ``load`` allocates).
- 16-bit grey (PNG ``I;16``, and ``I`` as older Pillow opened it) is scaled to 8 bits by its
  real level: Pillow's ``convert("RGB")`` clips it at 255, so 50 % grey became white. Float
  (``F``) pictures keep Pillow's 0–255 scale, clipped.
- Transparency (an alpha channel, a palette's transparent entries, a PNG colour key) is
  composited on white, the background a photo's cut-out is usually shown on; on black, as
  ``convert("RGB")`` leaves it, the subject would learn a black surround.
- The EXIF orientation is applied, so a phone photo stands the way it was taken.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from dreambooth_api.names import IMAGE_SUFFIXES, MAX_IMAGE_PIXELS
from PIL import Image, ImageOps

from .errors import DataError

# Pillow's names for the formats of IMAGE_SUFFIXES (its JPEG opener also opens phones' MPO files).
FORMATS = tuple(sorted({Image.registered_extensions()[s] for s in IMAGE_SUFFIXES}))
WHITE = (255, 255, 255, 255)
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _within_budget(size: tuple[int, int], where: str) -> None:
    width, height = size
    if width * height > MAX_IMAGE_PIXELS:
        raise DataError(
            f"{where} is {width}×{height} ({width * height / 1e6:.1f} megapixels), above the "
            f"{MAX_IMAGE_PIXELS / 1e6:.1f}-megapixel budget: scale it down before uploading it")


def _grey_to_8bit(image: Image.Image) -> Image.Image:
    """A 16-bit (or 32-bit integer holding 16-bit) grey picture as ``L``, or ``LA`` when a PNG
    colour key marks a level transparent."""
    samples = np.asarray(image).astype(np.float64)
    grey = Image.fromarray(np.rint(np.clip(samples, 0, 65535) / 257).astype(np.uint8), "L")
    key = image.info.get("transparency")
    if isinstance(key, int):
        alpha = np.where(samples == key, 0, 255).astype(np.uint8)
        return Image.merge("LA", (grey, Image.fromarray(alpha, "L")))
    return grey


def _has_transparency(image: Image.Image) -> bool:
    return bool({"A", "a"} & set(image.getbands())) or image.info.get("transparency") is not None


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB: 16-bit grey by its level, transparency composited on white."""
    if image.mode in _SIXTEEN_BIT:
        image = _grey_to_8bit(image)
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).round().astype(np.uint8), "L")
    if _has_transparency(image):
        if image.mode == "La":  # premultiplied: Pillow converts it only to LA
            image = image.convert("LA")
        return Image.alpha_composite(Image.new("RGBA", image.size, WHITE), image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def open_rgb(source: bytes | Path, where: str) -> Image.Image:
    """The picture in ``source`` (its bytes, or a local file) as RGB, upright. Raises DataError
    naming ``where`` for a file that is not an image of FORMATS or is above the pixel budget."""
    with warnings.catch_warnings():
        # Above Pillow's own limit it warns, and above twice that refuses: ours is lower and
        # names the file, so its warning is noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source, formats=FORMATS)
        except Image.DecompressionBombError as exc:
            raise DataError(f"{where} is above the {MAX_IMAGE_PIXELS / 1e6:.1f}-megapixel budget: {exc}") from None
        except Exception as exc:
            raise DataError(f"{where} is not a readable image ({', '.join(FORMATS)}): {exc}") from None
    with image:
        _within_budget(image.size, where)
        try:
            image.load()
            return to_rgb(ImageOps.exif_transpose(image))
        except Exception as exc:
            raise DataError(f"{where} is not a readable image: {exc}") from None
