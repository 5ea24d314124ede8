"""The grid's photos decode as the trainer's do: transparency on white, 16-bit grey by its level,
above the pixel budget a clear error naming the file."""

from __future__ import annotations

import numpy as np
import pytest
from dreambooth_cli.kube import CliError
from dreambooth_cli.samples import instance_photos
from PIL import Image

from tests.support.pngs import grey_png


def test_instance_photos_decode_as_the_trainer_does(tmp_path):
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(tmp_path / "a-cutout.png")
    Image.fromarray(np.full((4, 4), 32768, np.uint16)).save(tmp_path / "b-grey16.png")
    (tmp_path / "notes.txt").write_text("not a photo")
    photos = instance_photos(tmp_path.as_uri())
    assert [(p.mode, p.getpixel((0, 0))) for p in photos] == [("RGB", (255, 255, 255)), ("RGB", (128, 128, 128))]


def test_an_oversized_local_photo_is_refused_naming_it(tmp_path):
    (tmp_path / "huge.png").write_bytes(grey_png(12000, 12000, rows=0))
    with pytest.raises(CliError, match=f"{tmp_path / 'huge.png'} is 12000×12000 .*megapixel budget"):
        instance_photos(tmp_path.as_uri())
