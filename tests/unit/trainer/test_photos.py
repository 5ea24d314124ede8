"""Tenant photos decode by their real levels: 16-bit grey, transparency on white, every mode
Pillow opens, only the uploadable formats, and a pixel budget checked before decoding."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from dreambooth_api.names import MAX_IMAGE_PIXELS
from dreambooth_trainer.__main__ import main
from dreambooth_trainer.data import decode_image
from dreambooth_trainer.errors import DataError
from dreambooth_trainer.photos import open_rgb, to_rgb
from PIL import Image

from tests.support.pngs import grey_png
from tests.unit.trainer.helpers import local, report

WHITE, BLACK = (255, 255, 255), (0, 0, 0)


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def pixel(data: bytes) -> tuple[int, int, int]:
    image = open_rgb(data, "photo.png")
    assert image.mode == "RGB"
    return image.getpixel((0, 0))


# -- 16-bit grey ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("level", "expected"), [(0, 0), (257, 1), (32768, 128), (49151, 191), (65535, 255)])
def test_a_16_bit_grey_png_decodes_by_its_level(level, expected):
    image = Image.fromarray(np.full((4, 4), level, np.uint16))
    assert Image.open(io.BytesIO(encode(image))).mode == "I;16"
    assert pixel(encode(image)) == (expected,) * 3


def test_a_16_bit_grey_gradient_keeps_its_order():
    levels = np.linspace(0, 65535, 256).astype(np.uint16).reshape(16, 16)
    decoded = np.asarray(open_rgb(encode(Image.fromarray(levels)), "ramp.png"))[..., 0].astype(int)
    assert np.all(np.abs(decoded.ravel() - np.arange(256)) <= 1)


@pytest.mark.parametrize("dtype", ["<u2", ">u2"])
def test_16_bit_grey_of_either_byte_order_and_32_bit_integers(dtype):
    little_or_big = Image.fromarray(np.full((2, 2), 32768, dtype))
    assert little_or_big.mode in ("I;16", "I;16B")
    assert to_rgb(little_or_big).getpixel((0, 0)) == (128,) * 3
    assert to_rgb(Image.fromarray(np.full((2, 2), 32768, np.int32), "I")).getpixel((0, 0)) == (128,) * 3
    assert to_rgb(Image.fromarray(np.full((2, 2), 70000, np.int32), "I")).getpixel((0, 0)) == WHITE


def test_a_16_bit_colour_key_is_transparent_on_white():
    levels = np.array([[0, 1000]], np.uint16)
    image = open_rgb(encode(Image.fromarray(levels), transparency=0), "keyed.png")
    assert [image.getpixel((x, 0)) for x in (0, 1)] == [WHITE, (4, 4, 4)]


# -- transparency --------------------------------------------------------------------------------

def _palette(transparency) -> Image.Image:
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    image.putpixel((1, 0), 1)
    image.info["transparency"] = transparency
    return image


@pytest.mark.parametrize(("image", "options", "expected"), [
    (Image.new("RGBA", (2, 2), (255, 0, 0, 0)), {}, WHITE),
    (Image.new("RGBA", (2, 2), (0, 0, 0, 128)), {}, (127, 127, 127)),
    (Image.new("RGBA", (2, 2), (0, 0, 255, 255)), {}, (0, 0, 255)),
    (Image.new("LA", (2, 2), (0, 0)), {}, WHITE),
    (Image.new("LA", (2, 2), (0, 255)), {}, BLACK),
    (_palette(0), {"transparency": 0}, WHITE),
    (_palette(bytes([0, 255])), {"transparency": bytes([0, 255])}, WHITE),
    (Image.new("RGB", (2, 2), (1, 2, 3)), {"transparency": (1, 2, 3)}, WHITE),
    (Image.new("L", (2, 2), 7), {"transparency": 7}, WHITE),
], ids=["rgba-clear", "rgba-half", "rgba-opaque", "la-clear", "la-opaque", "p-key", "p-alpha",
        "rgb-key", "l-key"])
def test_transparency_is_composited_on_white(image, options, expected):
    assert pixel(encode(image, **options)) == expected


def test_a_palette_keeps_its_opaque_colours():
    image = open_rgb(encode(_palette(0), transparency=0), "palette.png")
    assert [image.getpixel((x, 0)) for x in (0, 1)] == [WHITE, (200, 0, 0)]


def test_a_transparent_webp_is_composited_on_white():
    assert pixel(encode(Image.new("RGBA", (2, 2), (0, 0, 0, 0)), "WEBP", lossless=True)) == WHITE


# -- every mode ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("mode", "value", "expected"), [
    ("1", 1, WHITE), ("L", 100, (100,) * 3), ("P", 0, BLACK), ("RGB", (1, 2, 3), (1, 2, 3)),
    ("RGBX", (1, 2, 3, 0), (1, 2, 3)), ("CMYK", (0, 0, 0, 0), WHITE), ("YCbCr", (255, 128, 128), WHITE),
    ("LA", (9, 0), WHITE), ("La", (0, 0), WHITE), ("PA", (0, 0), WHITE), ("RGBA", (9, 9, 9, 0), WHITE),
    ("RGBa", (0, 0, 0, 0), WHITE), ("I;16", 65535, WHITE), ("I;16B", 32768, (128,) * 3),
    ("I", 32768, (128,) * 3), ("F", 100.4, (100,) * 3), ("F", 300.0, WHITE), ("F", -5.0, BLACK),
])
def test_every_mode_becomes_rgb(mode, value, expected):
    rgb = to_rgb(Image.new(mode, (2, 2), value))
    assert (rgb.mode, rgb.getpixel((1, 1))) == ("RGB", expected)


@pytest.mark.parametrize(("mode", "fmt", "value", "expected"), [
    ("1", "PNG", 1, WHITE), ("1", "BMP", 0, BLACK), ("CMYK", "JPEG", (0, 0, 0, 0), WHITE),
    ("L", "JPEG", 0, BLACK), ("RGB", "BMP", (10, 20, 30), (10, 20, 30)),
])
def test_files_of_every_uploadable_format_decode(mode, fmt, value, expected):
    decoded = pixel(encode(Image.new(mode, (8, 8), value), fmt))
    assert np.allclose(decoded, expected, atol=2), decoded


def test_the_exif_orientation_stands_a_photo_upright():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90° clockwise when shown
    assert open_rgb(encode(Image.new("RGB", (4, 2)), "JPEG", exif=exif), "phone.jpg").size == (2, 4)


@pytest.mark.parametrize("fmt", ["TIFF", "GIF", "EPS", "PPM"])
def test_formats_other_than_the_uploadable_ones_are_not_parsed(fmt):
    data = encode(Image.new("RGB", (4, 4)), fmt)
    with pytest.raises(DataError, match="photo.png is not a readable image .*BMP, JPEG, PNG, WEBP"):
        open_rgb(data, "photo.png")


# -- the pixel budget ----------------------------------------------------------------------------

def test_the_budget_admits_48_megapixel_phone_photos_and_refuses_12000_squared():
    assert 8064 * 6048 <= MAX_IMAGE_PIXELS < 12000 * 12000


@pytest.mark.parametrize(("width", "height"), [(8064, 6048), (9248, 6936)])
def test_a_phone_sized_photo_is_admitted(width, height):
    image = open_rgb(grey_png(width, height), "phone.png")
    assert (image.size, image.getpixel((0, 0))) == ((width, height), BLACK)


@pytest.mark.parametrize(("width", "height"), [(12000, 12000), (8193, 8193), (20000, 20000), (1, 70_000_000)])
def test_a_photo_above_the_budget_is_refused_naming_file_size_and_budget(width, height):
    # The header alone: the budget is checked before any pixel data is read.
    with pytest.raises(DataError) as refused:
        open_rgb(grey_png(width, height, rows=0), "s3://data/cat/huge.png")
    message = str(refused.value)
    assert message.startswith("s3://data/cat/huge.png ") and "67.1-megapixel budget" in message
    assert f"{width}×{height}" in message or f"{width * height} pixels" in message


def test_a_refused_photo_does_not_allocate_its_pixels(tmp_path):
    """A valid 12000×12000 PNG (144 MB decoded): refusing it must not decode it. Measured as the
    growth of the peak RSS of a fresh process (Pillow allocates pixels outside Python's heap)."""
    path = tmp_path / "huge.png"
    path.write_bytes(grey_png(12000, 12000))
    script = (
        "import resource, sys\n"
        "from dreambooth_trainer.photos import open_rgb\n"
        "from dreambooth_trainer.errors import DataError\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n    open_rgb(data, 'huge.png')\nexcept DataError as err:\n    print(err)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    message, growth_kib = done.stdout.splitlines()
    assert "huge.png is 12000×12000 (144.0 megapixels)" in message
    assert int(growth_kib) < 16 * 1024, f"peak RSS grew {int(growth_kib) // 1024} MiB (decoded: 137 MiB)"


def test_training_refuses_an_oversized_photo_as_invalid_data(job_with_priors, cloody, tmp_path, capsys):
    """Exit code 2 and reason InvalidData: the operator fails the job instead of retrying it."""
    data = tmp_path / "data"
    shutil.copytree(cloody, data)
    (data / "huge.png").write_bytes(grey_png(12000, 12000, rows=0))
    job_with_priors["instance"]["dataUri"] = data.as_uri()
    (tmp_path / "job.json").write_text(json.dumps(job_with_priors))
    code = main(["train", "--config", str(tmp_path / "job.json")])
    result = report(capsys.readouterr().out)
    assert (code, result.status, result.reason) == (2, "Failed", "InvalidData")
    assert f"{data / 'huge.png'} is 12000×12000" in result.message and "budget" in result.message
    assert not local(job_with_priors["checkpointsUri"]).exists()


# -- resizing ------------------------------------------------------------------------------------

def test_decode_image_scales_the_shorter_side_and_crops_the_centre():
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (90, 160, 3), np.uint8))
    photo.paste((255, 0, 0), (0, 0, 35, 90))  # a red band on the left, cropped away
    tensor = decode_image(encode(photo), 64, "wide.png")
    assert tuple(tensor.shape) == (3, 64, 64) and -1 <= tensor.min() and tensor.max() <= 1
    resized = photo.resize((round(160 * 64 / 90), 64), Image.Resampling.BILINEAR)
    left = (resized.width - 64) // 2
    expected = np.asarray(resized.crop((left, 0, left + 64, 64)), np.float32) / 127.5 - 1
    assert np.abs(tensor.permute(1, 2, 0).numpy() - expected).mean() < 0.05


def test_a_long_thin_photo_is_cropped_before_it_is_scaled():
    # Scaled first, its shorter side to 64, it would be 64×64,000,000 pixels.
    tensor = decode_image(encode(Image.new("L", (1_000_000, 1), 255)), 64, "thin.png")
    assert tuple(tensor.shape) == (3, 64, 64) and bool((tensor == 1).all())
