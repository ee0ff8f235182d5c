"""Pixel bombs: tiny image files whose headers claim 30000x30000 pixels (2.7 GB per decode)."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A ~100-byte PNG whose header claims width x height RGB pixels (the IDAT holds a few bytes only)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def jpeg_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A small real JPEG whose SOF0 header is patched to claim width x height."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (9, 9, 9)).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)
