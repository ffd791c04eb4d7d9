"""Captions in the COCO format, for users who bring their own images (COCO, Flickr8k converted).

The JSON file needs two lists (other keys, such as `info` or `licenses`, are ignored):

    {"images":      [{"id": 1, "file_name": "dogs/1000268201.jpg"}, ...],
     "annotations": [{"image_id": 1, "caption": "A dog runs on the grass."}, ...]}

`file_name` is relative to the image folder; absolute names and names that climb out of the
folder with `..` are refused, so a caption file cannot make training read arbitrary files.

    >>> pairs = load_coco_captions("captions_train.json", "images/")
    >>> path, captions = pairs[0]
    >>> image = load_image(path, 224)  # uint8 (224, 224, 3)
"""

from __future__ import annotations

import json
import os
import posixpath
import warnings

import numpy as np
import tensorflow as tf

from zoo import images
from zoo.errors import DataError


def load_coco_captions(json_path, image_dir, skip_missing=False):
    """Reads a COCO-format caption file into `(image_path, [captions])` pairs.

    Args:
        json_path: the caption JSON file.
        image_dir: the folder that each image's `file_name` is relative to.
        skip_missing: if `True`, images whose file does not exist are left out, with one warning
            that counts them; if `False`, the first missing image raises. Defaults to `False`.

    Returns:
        A list of `(image_path, captions)`, in the order of the file's `images`, where
        `image_path` is `image_dir` joined with the `file_name` and `captions` lists the image's
        captions (stripped) in file order. Images without any caption are left out.

    Raises:
        DataError: naming the file and the entry, when the file is missing or is not JSON, a
            key is missing, an id is duplicated or unknown, a caption is not a non-empty string,
            a `file_name` escapes `image_dir`, or an image file is missing.
    """
    json_path = os.fspath(json_path)
    image_dir = os.fspath(image_dir)
    if not os.path.isfile(json_path):
        raise DataError(f"Caption file {json_path!r} does not exist (or is not a file).")
    if not os.path.isdir(image_dir):
        raise DataError(f"Image folder {image_dir!r} (for {json_path!r}) does not exist.")
    try:
        with open(json_path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"Caption file {json_path!r} is not valid JSON: {error}.") from error

    where = f"in {json_path!r}"
    if not isinstance(data, dict):
        raise DataError(
            f"Expected a JSON object with 'images' and 'annotations' {where}, "
            f"received a {type(data).__name__}."
        )
    images = _entries(data, "images", ("id", "file_name"), where)
    annotations = _entries(data, "annotations", ("image_id", "caption"), where)

    paths = {}
    for n, image in enumerate(images):
        image_id, file_name = image["id"], image["file_name"]
        if isinstance(image_id, bool) or not isinstance(image_id, (int, str)):
            raise DataError(
                f"images[{n}] {where} has id {image_id!r}: expected an integer or a string."
            )
        if image_id in paths:
            raise DataError(f"Image id {image_id!r} appears twice in 'images' {where}.")
        paths[image_id] = _join_inside(image_dir, file_name, f"images[{n}] {where}")

    captions = {image_id: [] for image_id in paths}
    for n, annotation in enumerate(annotations):
        image_id, caption = annotation["image_id"], annotation["caption"]
        if not isinstance(image_id, (int, str)) or image_id not in captions:
            raise DataError(
                f"annotations[{n}] {where} refers to image_id {image_id!r}, which is not in "
                "'images'."
            )
        if not isinstance(caption, str) or not caption.strip():
            raise DataError(
                f"annotations[{n}] {where} has caption {caption!r}: expected a non-empty string."
            )
        captions[image_id].append(caption.strip())

    pairs, missing = [], []
    for image_id, path in paths.items():
        if not captions[image_id]:
            continue
        if not os.path.isfile(path):
            if not skip_missing:
                raise DataError(
                    f"Image file {path!r} (image id {image_id!r} {where}) does not exist. Fix "
                    "the file name or image folder, or pass skip_missing=True to leave such "
                    "images out."
                )
            missing.append(path)
            continue
        pairs.append((path, captions[image_id]))
    if missing:
        warnings.warn(
            f"Skipped {len(missing)} of {len(missing) + len(pairs)} captioned images {where} "
            f"whose file is missing from {image_dir!r}, e.g. {missing[0]!r}.",
            stacklevel=2,
        )
    return pairs


def decode_image(image_bytes, size, name="image"):
    """Decodes an encoded JPEG / PNG / GIF / BMP image into uint8 `(height, width, 3)`.

    Graph-friendly (usable in `tf.data` and serving signatures). The header is checked before
    anything is decoded (`zoo.images.decode_checked`: other formats, more than
    `zoo.images.MAX_IMAGE_BYTES` bytes or `MAX_IMAGE_PIXELS` pixels are an
    `InvalidArgumentError` naming `name`); the uint8 image is then resized to `size` without
    keeping its aspect ratio (bilinear, antialiased); grey images get three channels and an
    alpha channel is dropped.

    Args:
        image_bytes: a scalar string tensor, the encoded file.
        size: an int (square) or `(height, width)`.
        name: how an error names the image (a string or a scalar string tensor).

    Returns:
        A uint8 tensor `(height, width, 3)`.
    """
    return images.decode_checked(image_bytes, _size(size), name)


def load_image(path, size):
    """Reads and decodes one image file into a uint8 array `(size, size, 3)`.

    Args:
        path: the image file (JPEG, PNG, GIF or BMP), at most `zoo.images.MAX_IMAGE_BYTES`
            bytes and `zoo.images.MAX_IMAGE_PIXELS` pixels.
        size: an int (square) or `(height, width)`.

    Returns:
        A uint8 `np.ndarray` `(height, width, 3)`.

    Raises:
        DataError: naming the file, when it is missing, too large, not one of those formats,
            or cannot be decoded. Its size is judged from the header, before decoding.
    """
    path = os.fspath(path)
    _size(size)
    return decode_bytes(read_image_file(path), size, f"image file {path!r}")


def read_image_file(path) -> bytes:
    """The bytes of an image file, after checking that it exists and is not larger than
    `zoo.images.MAX_IMAGE_BYTES` (a `DataError` naming it otherwise)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"Image file {path!r} does not exist.")
    images.check_file_size(os.path.getsize(path), f"image file {path!r}")
    with open(path, "rb") as f:
        return f.read(images.MAX_IMAGE_BYTES + 1)


def decode_bytes(data: bytes, size, name: str):
    """Checks an encoded image's header (`zoo.images.check_bytes`), then decodes and resizes it
    to `size`: a uint8 `np.ndarray` `(height, width, 3)`. Errors are a one-line `DataError`,
    `Cannot read <name>: ...`."""
    images.check_bytes(data, name)
    try:
        return decode_image(tf.constant(data), size).numpy()
    except tf.errors.OpError as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(
            f"Cannot read {name}: it is a corrupt {images.FORMATS} file that TensorFlow "
            f"cannot decode ({message})."
        ) from error


def _entries(data, key, fields, where):
    if key not in data:
        raise DataError(f"Missing key {key!r} {where} (found keys: {sorted(data)}).")
    entries = data[key]
    if not isinstance(entries, list):
        raise DataError(f"{key!r} {where} must be a list, received a {type(entries).__name__}.")
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DataError(f"{key}[{n}] {where} must be an object, received {entry!r}.")
        absent = [field for field in fields if field not in entry]
        if absent:
            raise DataError(
                f"{key}[{n}] {where} is missing key(s) {absent}; each entry of {key!r} needs "
                f"{list(fields)}."
            )
    return entries


def _join_inside(image_dir, file_name, where):
    """`image_dir/file_name`, refusing names that are absolute or climb out of `image_dir`."""
    if not isinstance(file_name, str) or not file_name:
        raise DataError(f"'file_name' of {where} must be a non-empty string, got {file_name!r}.")
    # Judge the name in both separator styles: a caption file may come from another system.
    as_posix = file_name.replace("\\", "/")
    if (
        posixpath.isabs(as_posix)
        or os.path.isabs(file_name)
        or (len(as_posix) > 1 and as_posix[1] == ":")  # a Windows drive, "C:/..."
        or "\0" in file_name
    ):
        raise DataError(
            f"'file_name' {file_name!r} of {where} is an absolute path; it must be relative to "
            f"the image folder {image_dir!r}."
        )
    normal = posixpath.normpath(as_posix)
    if normal == ".." or normal.startswith("../"):
        raise DataError(
            f"'file_name' {file_name!r} of {where} leads outside the image folder "
            f"{image_dir!r} ('..' path traversal); it must name a file inside it."
        )
    return os.path.join(image_dir, *normal.split("/"))


def _size(size):
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (size, size)
    try:
        height, width = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"`size` must be an int or (height, width), received {size!r}.") from None
    if height < 1 or width < 1:
        raise ValueError(f"`size` must be positive, received {size!r}.")
    return height, width
