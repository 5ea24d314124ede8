"""The before/after picture of a run: instance photos, base-model samples, adapter samples.

``grid_layout`` is pure (boxes of every tile and label); ``compose_grid`` draws it with Pillow.
"""

from __future__ import annotations

from dataclasses import dataclass

TILE = 128  # px of one image; the tiny model's 64 px samples are scaled up, SD's scaled down
LABEL_WIDTH = 150
CAPTION_HEIGHT = 32
PAD = 6
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)


@dataclass(frozen=True)
class Row:
    label: str
    images: list  # PIL images
    captions: list[str] | None = None  # one per image, drawn under it


@dataclass(frozen=True)
class Layout:
    size: tuple[int, int]
    labels: list[tuple[int, int]]  # top-left of each row's label
    tiles: list[list[tuple[int, int, int, int]]]  # per row, per image: (left, top, right, bottom)
    captions: list[list[tuple[int, int]]]  # per row, per caption: top-left


def grid_layout(counts: list[int], captioned: list[bool], tile: int = TILE) -> Layout:
    """Rows of ``counts[i]`` tiles after a label column; a captioned row gets a text strip."""
    width = LABEL_WIDTH + max([*counts, 1]) * (tile + PAD) + PAD
    top, labels, tiles, captions = PAD, [], [], []
    for count, has_caption in zip(counts, captioned, strict=True):
        labels.append((PAD, top + tile // 2 - 8))
        row = [(LABEL_WIDTH + PAD + i * (tile + PAD), top) for i in range(count)]
        tiles.append([(x, y, x + tile, y + tile) for x, y in row])
        top += tile
        captions.append([(x, top + 2) for x, _ in row] if has_caption else [])
        top += (CAPTION_HEIGHT if has_caption else 0) + PAD
    return Layout(size=(width, top), labels=labels, tiles=tiles, captions=captions)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _fit(draw, text: str, font, width: int) -> str:
    """``text`` shortened with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _wrap(draw, text: str, font, width: int, lines: int = 2) -> list[str]:
    out, words = [], text.split()
    while words and len(out) < lines:
        line = words.pop(0)
        while words and draw.textlength(f"{line} {words[0]}", font=font) <= width:
            line += " " + words.pop(0)
        out.append(line)
    if words:
        out[-1] = _fit(draw, out[-1] + " " + " ".join(words), font, width)
    return [_fit(draw, line, font, width) for line in out]


def compose_grid(rows: list[Row], tile: int = TILE):
    """One PNG-ready image of ``rows``, each image fitted into a ``tile``-pixel square."""
    from PIL import Image, ImageDraw

    layout = grid_layout([len(r.images) for r in rows], [bool(r.captions) for r in rows], tile)
    canvas = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    label_font, caption_font = _font(14), _font(12)
    for row, label_at, boxes, caption_at in zip(rows, layout.labels, layout.tiles, layout.captions, strict=True):
        for i, line in enumerate(_wrap(draw, row.label, label_font, LABEL_WIDTH - 2 * PAD, lines=3)):
            draw.text((label_at[0], label_at[1] + 16 * i - 8), line, fill=INK, font=label_font)
        for image, box in zip(row.images, boxes, strict=True):
            fitted = image.convert("RGB")
            if max(fitted.size) > tile:
                fitted.thumbnail((tile, tile))
            elif max(fitted.size) < tile:  # small samples: scale up with sharp pixels
                scale = tile / max(fitted.size)
                fitted = fitted.resize((round(fitted.width * scale), round(fitted.height * scale)),
                                       Image.Resampling.NEAREST)
            canvas.paste(fitted, (box[0] + (tile - fitted.width) // 2, box[1] + (tile - fitted.height) // 2))
        for text, (x, y) in zip(row.captions or [], caption_at, strict=False):
            for i, line in enumerate(_wrap(draw, text, caption_font, tile)):
                draw.text((x, y + 14 * i), line, fill=INK, font=caption_font)
    return canvas
