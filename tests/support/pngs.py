"""PNGs of any size built without decoding them: for the tests of the pixel budget."""

from __future__ import annotations

import struct
import zlib


def grey_png(width: int, height: int, rows: int | None = None) -> bytes:
    """An 8-bit grey PNG of ``width``×``height`` black pixels, compressed as it streams (no
    decoded copy in this process); ``rows`` writes only that many rows of pixel data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    pixels, row = zlib.compressobj(9), b"\0" * (width + 1)  # filter byte + samples
    idat = b"".join(pixels.compress(row) for _ in range(height if rows is None else rows)) + pixels.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
