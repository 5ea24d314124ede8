"""The before/after grid: layout (pure) and the drawn PNG."""

from __future__ import annotations

import pytest
from dreambooth_cli.grid import CAPTION_HEIGHT, LABEL_WIDTH, PAD, Row, compose_grid, grid_layout
from PIL import Image


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize(
    ("counts", "captioned"),
    [([7, 4, 4], [False, True, True]), ([4, 4], [True, True]), ([1], [False]), ([0, 2], [False, True])],
)
def test_layout_rows_tiles_and_captions(counts, captioned):
    tile = 100
    layout = grid_layout(counts, captioned, tile)
    width, height = layout.size
    assert width == LABEL_WIDTH + max(counts) * (tile + PAD) + PAD
    assert height == PAD + sum(tile + PAD + (CAPTION_HEIGHT if c else 0) for c in captioned)
    boxes = [b for row in layout.tiles for b in row]
    assert [len(row) for row in layout.tiles] == counts
    assert all(b[2] - b[0] == tile and b[3] - b[1] == tile for b in boxes)
    assert all(b[0] >= LABEL_WIDTH and b[2] <= width and b[3] <= height for b in boxes), "tiles clear the labels"
    assert not any(_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    for row, caps, has in zip(layout.tiles, layout.captions, captioned, strict=True):
        assert len(caps) == (len(row) if has else 0)
        assert all(y >= box[3] and x == box[0] for (x, y), box in zip(caps, row, strict=False)), "under its tile"
    # rows stack top to bottom in order, the same column at the same x
    tops = [row[0][1] for row in layout.tiles if row]
    assert tops == sorted(tops)


def test_compose_grid_places_every_image_in_its_tile():
    red, blue = Image.new("RGB", (64, 64), (255, 0, 0)), Image.new("RGB", (300, 200), (0, 0, 255))
    rows = [Row("instance photos", [blue]), Row("before", [red, red], ["a photo of sks cat on a beach"] * 2),
            Row("after", [red, red], ["p", "q"])]
    image = compose_grid(rows, tile=64)
    layout = grid_layout([1, 2, 2], [False, True, True], 64)
    assert image.size == layout.size
    left, top, right, bottom = layout.tiles[1][1]
    assert image.getpixel(((left + right) // 2, (top + bottom) // 2)) == (255, 0, 0)
    left, top, right, bottom = layout.tiles[0][0]  # 300×200 photo shrunk to 64×43, centred
    assert image.getpixel(((left + right) // 2, (top + bottom) // 2)) == (0, 0, 255)
    assert image.getpixel(((left + right) // 2, top + 2)) == (255, 255, 255)
    # labels and captions are drawn in the margins: some dark pixels left of the first tile
    label_area = image.crop((0, top, LABEL_WIDTH, bottom)).convert("L")
    assert label_area.getextrema()[0] < 100


def test_small_samples_are_scaled_up_without_blur():
    checker = Image.new("RGB", (2, 2))
    checker.putdata([(0, 0, 0), (255, 255, 255), (255, 255, 255), (0, 0, 0)])
    image = compose_grid([Row("x", [checker])], tile=64)
    left, top, _, _ = grid_layout([1], [False], 64).tiles[0][0]
    assert image.getpixel((left + 1, top + 1)) == (0, 0, 0)
    assert image.getpixel((left + 40, top + 1)) == (255, 255, 255)
