"""Encoded images from outside (files, request bytes): the formats taken and the size limits.

A small compressed file can decode to a huge array (a PNG of 20,000 x 20,000 black pixels
takes well under a megabyte and decodes to 1.2 GB of RGB), so every image is judged by its
header before it is decoded:

- it must be a JPEG, PNG, GIF or BMP file (judged by its first bytes); anything else (WebP,
  TIFF, HEIC, text, random bytes) is refused, never decoded as something else;
- the file may have at most `MAX_IMAGE_BYTES` bytes;
- the width and height its header declares (JPEG: the frame header, PNG: IHDR, GIF: the logical
  screen, BMP: the info header) may give at most `MAX_IMAGE_PIXELS` pixels; so may a GIF's
  frames all together (its decoder reads every frame, even when only the first is kept).

Then it is decoded as uint8 and resized (bilinear, antialiased) to the model's input size, and
only that small image is ever held as float32.

Two forms of the same checks: `check_bytes` in Python (a `DataError` naming the image, for the
loaders and the command line) and `decode_checked` in TensorFlow ops (an `InvalidArgumentError`
naming the image, for `tf.data` and the SavedModel's `serving_bytes`, which holds no Python).

    >>> check_bytes(open("photo.jpg", "rb").read(), "image file 'photo.jpg'")  # (width, height)
    >>> image = decode_checked(tf.constant(data), 48)  # uint8 (48, 48, 3)
"""

from __future__ import annotations

import struct

import tensorflow as tf

from zoo.errors import DataError

# 50 MiB: far above any photo a captioner needs (the model sees a few hundred pixels a side).
MAX_IMAGE_BYTES = 50 * 2**20
# 25 megapixels (5,000 x 5,000; 75 MB once decoded as 8-bit RGB): a full-size photo from most
# cameras fits; a larger one should be downscaled before it is sent.
MAX_IMAGE_PIXELS = 25_000_000
FORMATS = "JPEG, PNG, GIF or BMP"

# The first bytes of each format `tf.io.decode_image` reads, as it tells them apart.
_MAGIC = (("JPEG", b"\xff\xd8\xff"), ("PNG", b"\x89PNG\r\n\x1a\n"), ("GIF", b"GIF8"),
          ("BMP", b"BM"))
# Formats people send that are refused, named in the error so the fix is clear.
_OTHERS = ((b"RIFF", 8, b"WEBP", "WebP"), (b"II*\x00", 0, b"", "TIFF"),
           (b"MM\x00*", 0, b"", "TIFF"), (b"", 4, b"ftyp", "HEIF/AVIF"))


def image_format(data: bytes) -> str | None:
    """`"JPEG"`, `"PNG"`, `"GIF"` or `"BMP"` from a file's first bytes; `None` for anything else."""
    for name, magic in _MAGIC:
        if data.startswith(magic):
            return name
    return None


def header_size(data: bytes) -> tuple[int, int]:
    """`(width, height)` as the header of a JPEG / PNG / GIF / BMP file declares them, read
    without decoding the pixels.

    Raises:
        DataError: not one of those formats, or a header too short or corrupt to read.
    """
    kind = image_format(data)
    if kind == "JPEG":
        try:  # libjpeg reads the markers up to the frame header, as the decoder will
            height, width, _ = (int(v) for v in tf.image.extract_jpeg_shape(data).numpy())
        except tf.errors.OpError:
            raise DataError("corrupt JPEG header") from None
        return width, height
    if kind == "PNG":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise DataError("corrupt PNG header (no IHDR chunk)")
        return struct.unpack(">II", data[16:24])
    if kind == "GIF":
        if len(data) < 10:
            raise DataError("corrupt GIF header")
        return struct.unpack("<HH", data[6:10])
    if kind == "BMP":
        if len(data) < 26:
            raise DataError("corrupt BMP header")
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width), abs(height)  # a negative height is a top-down BMP
    raise DataError(f"not a {FORMATS} file")


def gif_frame_pixels(data: bytes) -> tuple[int, int]:
    """`(frames, pixels)`: how many images a GIF file holds and their pixels in all, from the
    image descriptors, skipping the compressed data. The decoder reads every frame into memory
    even when only the first is kept, so a small GIF of many large frames is a bomb too."""
    if len(data) < 13:
        return 0, 0
    def table(packed):  # the size of a colour table a packed byte announces
        return 3 * 2 ** ((packed & 7) + 1) if packed & 0x80 else 0

    pos, frames, pixels = 13 + table(data[10]), 0, 0
    while pos < len(data):
        if data[pos] == 0x2C and pos + 10 <= len(data):  # an image descriptor
            width, height = struct.unpack("<HH", data[pos + 5 : pos + 9])
            frames, pixels = frames + 1, pixels + width * height
            pos += 10 + table(data[pos + 9]) + 1  # the descriptor, its colour table, LZW size
        elif data[pos] == 0x21:  # an extension: its label, then data sub-blocks
            pos += 2
        else:  # the trailer (or garbage, which the decoder will refuse)
            break
        while pos < len(data) and data[pos]:  # data sub-blocks, each led by its length
            pos += data[pos] + 1
        pos += 1
    return frames, pixels


def _not_an_image(data: bytes) -> str:
    for magic, at, tag, name in _OTHERS:
        if data.startswith(magic) and data[at : at + len(tag)] == tag:
            return f"it is a {name} file, not a {FORMATS} file; convert it to PNG or JPEG"
    if not data:
        return f"it is empty, not a {FORMATS} file"
    return (f"it is not a {FORMATS} file (it starts with {bytes(data[:8])!r}); convert it to "
            "PNG or JPEG")


def check_bytes(data: bytes, name: str, max_bytes: int | None = None,
                max_pixels: int | None = None) -> tuple[int, int]:
    """Checks an encoded image before it is decoded; returns its `(width, height)`.

    Args:
        data: the encoded file.
        name: how the error names the image, e.g. `"image file 'a.png'"` or `"image 3"`.
        max_bytes, max_pixels: the limits; default `MAX_IMAGE_BYTES` and `MAX_IMAGE_PIXELS`.

    Raises:
        DataError: one line, `Cannot read <name>: ...`, saying why: too many bytes, not a
            JPEG / PNG / GIF / BMP file, a corrupt header, or more pixels than the limit.
    """
    max_pixels = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    check_file_size(len(data), name, max_bytes)
    if image_format(data) is None:
        raise DataError(f"Cannot read {name}: {_not_an_image(data)}.")
    try:
        width, height = header_size(data)
    except DataError as e:
        raise DataError(f"Cannot read {name}: {e}.") from None
    if width * height > max_pixels:
        raise DataError(
            f"Cannot read {name}: it is {width}x{height} = {width * height:,} pixels, more "
            f"than the limit of {max_pixels:,} (zoo.images.MAX_IMAGE_PIXELS); downscale it first."
        )
    if image_format(data) == "GIF":
        frames, pixels = gif_frame_pixels(data)
        if pixels > max_pixels:
            raise DataError(
                f"Cannot read {name}: it is a GIF of {frames:,} frames holding {pixels:,} pixels "
                f"in all, more than the limit of {max_pixels:,} (zoo.images.MAX_IMAGE_PIXELS); "
                "every frame is decoded: send the first frame alone, as a PNG."
            )
    return width, height


def check_file_size(size: int, name: str, max_bytes: int | None = None) -> None:
    """Refuses an image of more than `max_bytes` (default `MAX_IMAGE_BYTES`) bytes, before it
    is read: a `DataError`, `Cannot read <name>: ...`."""
    max_bytes = MAX_IMAGE_BYTES if max_bytes is None else max_bytes
    if size > max_bytes:
        raise DataError(
            f"Cannot read {name}: it is {size:,} bytes, more than the limit of {max_bytes:,} "
            "(zoo.images.MAX_IMAGE_BYTES); downscale or recompress it first."
        )


# -- in TensorFlow ops -----------------------------------------------------------------------


def resize_uint8(images, size):
    """uint8 `[..., H, W, 3]` (or float in [0, 255]) -> uint8 `[..., height, width, 3]`:
    bilinear, antialiased, rounded; `size` is an int (square) or `(height, width)`. The resize
    reads the uint8 pixels itself: no float32 copy of the full-size image is ever made, only
    of the resized one."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    resized = tf.image.resize(images, size, antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def graph_header(data):
    """A scalar string -> `(known, width, height)`: whether it starts like a JPEG / PNG / GIF /
    BMP file, and the int64 width and height its header declares (0 when unknown)."""
    starts = [tf.equal(tf.strings.substr(data, 0, len(magic)), magic) for _, magic in _MAGIC]
    kind = tf.argmax(tf.cast(tf.stack(starts + [True]), tf.int32), output_type=tf.int32)
    # The first 32 bytes, zero-padded when the file is shorter, as int64.
    header = tf.io.decode_raw(
        tf.strings.substr(data, 0, 32) + tf.constant(b"\x00" * 32), tf.uint8
    )
    header = tf.cast(header[:32], tf.int64)

    def le(at, n):
        return sum(header[at + i] * (256**i) for i in range(n))

    def be(at, n):
        return sum(header[at + i] * (256 ** (n - 1 - i)) for i in range(n))

    def signed32(x):
        x = tf.where(x >= 2**31, x - 2**32, x)
        return tf.abs(x)

    def jpeg():
        shape = tf.cast(tf.image.extract_jpeg_shape(data), tf.int64)
        return tf.stack([shape[1], shape[0]])

    branches = [
        jpeg,
        lambda: tf.stack([be(16, 4), be(20, 4)]),  # PNG IHDR
        lambda: tf.stack([le(6, 2), le(8, 2)]),  # GIF logical screen
        lambda: tf.stack([signed32(le(18, 4)), signed32(le(22, 4))]),  # BMP info header
        lambda: tf.zeros([2], tf.int64),
    ]
    size = tf.switch_case(kind, branches)
    return kind < len(_MAGIC), size[0], size[1]


def graph_gif_frame_pixels(data, limit):
    """`gif_frame_pixels`'s pixels in TensorFlow ops (int64), for a scalar string that starts
    like a GIF; the walk stops once they pass `limit`."""
    raw = tf.io.decode_raw(data + tf.constant(b"\x00" * 16), tf.uint8)  # zero-padded
    length = tf.cast(tf.strings.length(data), tf.int64)

    def byte(pos):
        return tf.cast(tf.gather(raw, pos), tf.int64)

    def table(packed):  # the size of a colour table a packed byte announces
        size = 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), packed & 7)
        return tf.where(packed & 0x80 > 0, size, tf.constant(0, tf.int64))

    def step(pos, in_blocks, pixels, go):
        b = byte(pos)
        # In data sub-blocks: each led by its length, a 0 ending them.
        sub_pos = pos + 1 + b
        # At a block: an image descriptor (with its colour table and LZW size byte), an
        # extension (with its label), or the end.
        image, extension = b == 0x2C, b == 0x21
        w = byte(pos + 5) + 256 * byte(pos + 6)
        h = byte(pos + 7) + 256 * byte(pos + 8)
        block_pos = tf.where(image, pos + 10 + table(byte(pos + 9)) + 1, pos + 2)
        return (tf.where(in_blocks, sub_pos, block_pos),
                tf.logical_not(in_blocks) | (b != 0),
                pixels + tf.where(image & tf.logical_not(in_blocks), w * h, 0),
                in_blocks | image | extension)

    start = 13 + table(byte(tf.constant(10, tf.int64)))  # after the global colour table
    _, _, pixels, _ = tf.while_loop(
        lambda pos, in_blocks, pixels, go: go & (pos < length) & (pixels <= limit),
        step,
        (start, tf.constant(False), tf.constant(0, tf.int64), tf.constant(True)),
    )
    return pixels


def decode_checked(data, size, name="image", max_bytes=None, max_pixels=None):
    """A scalar string (an encoded image) -> uint8 `(height, width, 3)` resized to `size` (an
    int or `(height, width)`), refusing, before anything is decoded, bytes that are not a
    JPEG / PNG / GIF / BMP file, more than `max_bytes` bytes, or a header declaring more than
    `max_pixels` pixels, or a GIF whose frames hold more than that in all (defaults:
    `MAX_IMAGE_BYTES`, `MAX_IMAGE_PIXELS`).

    A refused image raises `InvalidArgumentError` with a message that starts with `name` (a
    string or a scalar string tensor, e.g. `"image_bytes[3]"`) and names the limit. Grey images
    get three channels, an alpha channel is dropped, a GIF gives its first frame.
    """
    max_bytes = MAX_IMAGE_BYTES if max_bytes is None else int(max_bytes)
    max_pixels = MAX_IMAGE_PIXELS if max_pixels is None else int(max_pixels)
    name = tf.convert_to_tensor(name, tf.string)

    def message(template, values=()):  # `name` then the text (format would quote a string)
        return tf.strings.join([name, tf.strings.format(template, values)])

    length = tf.cast(tf.strings.length(data), tf.int64)
    too_big = tf.debugging.Assert(
        length <= max_bytes,
        [message(" is {} bytes, more than the limit of {} (MAX_IMAGE_BYTES); downscale or "
                 "recompress it", (length, max_bytes))],
    )
    with tf.control_dependencies([too_big]):
        known, width, height = graph_header(data)
    not_image = tf.debugging.Assert(
        known, [message(f" is not a {FORMATS} file; send one of those")]
    )
    with tf.control_dependencies([not_image]):
        pixels = width * height
    too_many = tf.debugging.Assert(
        pixels <= max_pixels,
        [message(" is {}x{} = {} pixels, more than the limit of {} (MAX_IMAGE_PIXELS); "
                 "downscale it first", (width, height, pixels, max_pixels))],
    )
    with tf.control_dependencies([too_many]):
        is_gif = tf.equal(tf.strings.substr(data, 0, 4), b"GIF8")
        frame_pixels = tf.cond(is_gif, lambda: graph_gif_frame_pixels(data, max_pixels),
                               lambda: tf.constant(0, tf.int64))
    too_many_frames = tf.debugging.Assert(
        frame_pixels <= max_pixels,
        [message(" is a GIF whose frames hold more than {} pixels in all (MAX_IMAGE_PIXELS); "
                 "every frame is decoded: send the first frame alone, as a PNG", (max_pixels,))],
    )
    with tf.control_dependencies([too_many_frames]):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
    return resize_uint8(image, size)
