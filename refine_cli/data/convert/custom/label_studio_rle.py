"""Label Studio's brush RLE: the bit-packed run-length format of thi.ng's rle-pack, which Label Studio's
editor writes (`encode(imageData, length)`) and its SDK reads (`label_studio_sdk.converter.brush.decode_rle`).

The stream, most significant bit first: 32 bits value count, 5 bits word size - 1, four 4-bit run-size
widths - 1; then until the count is reached, one bit (1: a run of one repeated word, 0: a chunk of
literal words), 2 bits choosing a run-size width, that many bits of length - 1, and the word(s). The
values are the RGBA bytes of the mask image, row by row; the alpha byte tells whether a pixel is brushed.

Label Studio's SDK is too heavy a dependency (pandas, nltk, a pinned OpenCV), so this is the published
format decoded here; the tests decode streams made by the SDK's own encoder and by rle-pack itself.
"""

from __future__ import annotations

import numpy as np


class BadRLE(ValueError):
    """An RLE stream that is not rle-pack's format or does not fit the image: the caller names the task."""


def _bits(data: bytes):  # noqa: ANN202 - a reader closure
    """read(position, n) -> the n-bit big-endian number at bit `position` (n <= 32)."""
    padded = data + b"\0" * 8

    def read(position: int, n: int) -> int:
        start = position >> 3
        chunk = int.from_bytes(padded[start : start + 6], "big")
        return (chunk >> (48 - (position & 7) - n)) & ((1 << n) - 1)

    return read


def rle_values(rle: list[int]) -> bytes:
    """The RLE of a Label Studio result (a list of byte values) as bytes; BadRLE for anything else."""
    try:
        array = np.asarray(rle)
    except (TypeError, ValueError):
        raise BadRLE("the brush RLE is not a list of byte values") from None
    if array.ndim != 1 or array.dtype.kind not in "iu" or (array.size and (array.min() < 0 or array.max() > 255)):
        raise BadRLE("the brush RLE is not a list of byte values (0-255)")
    return array.astype(np.uint8).tobytes()


def decode(data: bytes, expected: int) -> np.ndarray:
    """The decoded values (uint8/16/32 by word size); BadRLE unless the stream holds exactly `expected` values.

    The count is checked BEFORE anything is allocated (a 30-byte stream can claim four billion values),
    and every read is checked against the stream's end, so a cut or forged stream fails with a reason.
    """
    total_bits = len(data) * 8
    if total_bits < 57:
        raise BadRLE("the brush RLE is too short to hold its header")
    read = _bits(data)
    count, word = read(0, 32), read(32, 5) + 1
    if count != expected:
        raise BadRLE(f"the brush RLE holds {count} values, not the {expected} of the image (width x height x 4)")
    widths = [read(37 + 4 * i, 4) + 1 for i in range(4)]
    out = np.zeros(count, dtype=np.uint8 if word < 9 else np.uint16 if word < 17 else np.uint32)
    position, i = 53, 0
    while i < count:
        if position + 3 > total_bits:
            raise BadRLE(f"the brush RLE ends after {i} of its {count} values")
        repeated, width = read(position, 1), widths[read(position + 1, 2)]
        end = i + 1 + read(position + 3, width)
        position += 3 + width
        if end > count:
            raise BadRLE(f"the brush RLE runs past its {count} values")
        words = 1 if repeated else end - i
        if position + words * word > total_bits:
            raise BadRLE(f"the brush RLE ends after {i} of its {count} values")
        if repeated:
            out[i:end] = read(position, word)
        elif words <= 16:
            out[i:end] = [read(position + k * word, word) for k in range(words)]
        else:  # a long literal chunk: unpack its bits at once
            out[i:end] = _words(data, position, words, word)
        position += words * word
        i = end
    return out


def _words(data: bytes, position: int, count: int, word: int) -> np.ndarray:
    start, stop = position >> 3, (position + count * word + 7) >> 3
    bits = np.unpackbits(np.frombuffer(data[start:stop], dtype=np.uint8))
    bits = bits[position & 7 : (position & 7) + count * word].reshape(count, word).astype(np.uint64)
    return bits @ (np.uint64(1) << np.arange(word - 1, -1, -1, dtype=np.uint64))


def brush_mask(rle: list[int], height: int, width: int) -> np.ndarray:
    """HxW bool: the pixels whose alpha byte is not 0 (what Label Studio's own COCO export traces)."""
    values = decode(rle_values(rle), height * width * 4)
    return values.reshape(height, width, 4)[:, :, 3] != 0
