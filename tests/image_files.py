"""Encoded image files for the tests of the image checks (`zoo.images`): real files of each
accepted format, files of other formats, and files whose header declares more pixels than
`zoo.images.MAX_IMAGE_PIXELS` while the file itself stays small (decompression bombs)."""

import io
import struct
import zlib

import numpy as np


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int, height: int) -> bytes:
    """A valid grey PNG of `width x height` black pixels: a few hundred kB that decode to
    `3 * width * height` bytes of RGB. Compressed row by row, never held whole."""
    packer = zlib.compressobj(9)
    row = bytes(1 + width)  # filter byte 0, then the row's pixels
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data)
            + _chunk(b"IEND", b""))


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) is rewritten to declare `width x height`."""
    import tensorflow as tf

    data = bytearray(tf.io.encode_jpeg(np.full((8, 8, 3), 128, np.uint8)).numpy())
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_declaring(width: int, height: int) -> bytes:
    """A real one-pixel GIF whose logical screen is rewritten to `width x height`."""
    data = bytearray(pil_file("GIF", (1, 1)))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def gif_frames(frames: int, size: int) -> bytes:
    """A valid GIF of `frames` plain grey `size x size` frames: a few kB, and its decoder reads
    every frame into memory even when only the first is kept."""
    from PIL import Image

    images = [Image.fromarray(np.full((size, size), 40 * i % 256, np.uint8), "L")
              for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, "GIF", save_all=True, append_images=images[1:])
    return out.getvalue()


def bmp_declaring(width: int, height: int) -> bytes:
    """A BMP header (BITMAPINFOHEADER, 24 bits) declaring `width x height`, top-down, with one
    row of pixel data."""
    info = struct.pack("<IiiHHIIiiII", 40, width, -height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    pixels = bytes(3 * width)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + len(pixels), 0, 0, 54) + info + pixels


def pil_file(kind: str, size=(40, 30), seed=0) -> bytes:
    """A real image file of the format PIL calls `kind` ("WEBP", "TIFF", "GIF", "BMP", ...),
    of random colours, `size` = (width, height)."""
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, kind)
    return out.getvalue()


# Bytes that are no JPEG / PNG / GIF / BMP file: real files of other formats, text, noise.
def not_images() -> dict:
    return {
        "webp": pil_file("WEBP"),
        "tiff": pil_file("TIFF"),
        "text": b"not an image",
        "random": np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8).tobytes(),
        "empty": b"",
    }
