"""Write gateway/static/favicon.ico: the banner's archive-box icon, drawn as pixels.

The same shapes as FAVICON_SVG in gateway/banner.py (a rounded blue square, a white
lid, a white box with a slot), rasterised at 16, 32 and 48 px into PNG images inside
one ICO file, with nothing but the standard library. Run it again after changing them:

    .venv/bin/python tools/make_favicon.py
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

BLUE = (0x1D, 0x4F, 0x91, 255)
WHITE = (255, 255, 255, 255)
CLEAR = (0, 0, 0, 0)
# In a 32-unit square, as in the SVG: (x, y, width, height).
LID = (6, 7, 20, 5)
BOX = (8, 13, 16, 13)
SLOT = (13, 16, 6, 2)
CORNER = 6  # radius of the square's corners


def _inside(x: float, y: float, rect: tuple[int, int, int, int]) -> bool:
    rx, ry, rw, rh = rect
    return rx <= x < rx + rw and ry <= y < ry + rh


def _in_square(x: float, y: float) -> bool:
    cx = min(max(x, CORNER), 32 - CORNER)
    cy = min(max(y, CORNER), 32 - CORNER)
    return (x - cx) ** 2 + (y - cy) ** 2 <= CORNER**2


def pixel(x: float, y: float) -> tuple[int, int, int, int]:
    """Return the colour at a point of the 32-unit square."""
    if not _in_square(x, y):
        return CLEAR
    if _inside(x, y, SLOT):
        return BLUE
    if _inside(x, y, LID) or _inside(x, y, BOX):
        return WHITE
    return BLUE


def png(size: int) -> bytes:
    """Return a PNG of the icon at size x size pixels (pixel centres sampled)."""
    rows = b""
    for j in range(size):
        row = bytearray(b"\0")
        for i in range(size):
            row += bytes(pixel((i + 0.5) * 32 / size, (j + 0.5) * 32 / size))
        rows += bytes(row)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def ico(sizes: tuple[int, ...] = (16, 32, 48)) -> bytes:
    """Return an ICO file holding one PNG image per size."""
    images = [png(s) for s in sizes]
    out = struct.pack("<HHH", 0, 1, len(images))
    offset = 6 + 16 * len(images)
    for size, image in zip(sizes, images, strict=True):
        out += struct.pack("<BBBBHHII", size % 256, size % 256, 0, 0, 1, 32, len(image), offset)
        offset += len(image)
    return out + b"".join(images)


if __name__ == "__main__":
    target = Path(__file__).resolve().parent.parent / "gateway" / "static" / "favicon.ico"
    target.write_bytes(ico())
    sys.stdout.write(f"wrote {target} ({target.stat().st_size} bytes)\n")
