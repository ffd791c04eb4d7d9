import json
import os

import numpy as np
import pytest
import tensorflow as tf

from zoo.data.coco import decode_image, load_coco_captions, load_image
from zoo.errors import DataError


def write_png(path, height=10, width=20, channels=3):
    pixels = np.arange(height * width * channels, dtype=np.uint8).reshape(height, width, channels)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(path, tf.io.encode_png(pixels))


def write_json(path, data):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)
    return str(path)


@pytest.fixture
def dataset(tmp_path):
    images = tmp_path / "images"
    write_png(str(images / "a.png"))
    write_png(str(images / "sub" / "b.png"), channels=1)
    data = {
        "info": {"description": "ignored"},
        "images": [
            {"id": 1, "file_name": "a.png"},
            {"id": 2, "file_name": "sub/b.png"},
            {"id": 3, "file_name": "uncaptioned.png"},
        ],
        "annotations": [
            {"image_id": 2, "caption": "  A grey square. "},
            {"image_id": 1, "caption": "A colourful square."},
            {"image_id": 2, "caption": "Grey again."},
        ],
    }
    return tmp_path, str(images), data


def test_loads_pairs_in_image_order(dataset):
    folder, images, data = dataset
    pairs = load_coco_captions(write_json(folder / "c.json", data), images)
    assert pairs == [
        (os.path.join(images, "a.png"), ["A colourful square."]),
        (os.path.join(images, "sub", "b.png"), ["A grey square.", "Grey again."]),
    ]


def test_missing_and_invalid_json(tmp_path):
    with pytest.raises(DataError, match="nope.json.*does not exist"):
        load_coco_captions(tmp_path / "nope.json", tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="bad.json.*not valid JSON"):
        load_coco_captions(bad, tmp_path)
    with pytest.raises(DataError, match="Image folder .*missing_dir"):
        load_coco_captions(write_json(tmp_path / "ok.json", {}), tmp_path / "missing_dir")


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda d: d.pop("annotations"), "Missing key 'annotations'.*c.json"),
        (lambda d: d["images"][1].pop("file_name"), r"images\[1\].*missing key\(s\) \['file_name'\]"),
        (lambda d: d["annotations"][0].pop("caption"), r"annotations\[0\].*missing key\(s\) \['caption'\]"),
        (lambda d: d["annotations"][1].update(caption=42), r"annotations\[1\].*caption 42.*string"),
        (lambda d: d["annotations"][1].update(caption=None), r"annotations\[1\].*non-empty string"),
        (lambda d: d["annotations"][1].update(image_id=99), "image_id 99, which is not in 'images'"),
        (lambda d: d["images"][1].update(id=1), "Image id 1 appears twice"),
        (lambda d: d.update(images={"a": 1}), "'images' .* must be a list"),
    ],
)  # fmt: skip
def test_malformed_content_is_named(dataset, change, match):
    folder, images, data = dataset
    change(data)
    with pytest.raises(DataError, match=match):
        load_coco_captions(write_json(folder / "c.json", data), images)


@pytest.mark.parametrize(
    "file_name, match",
    [
        ("../secret.png", "outside the image folder"),
        ("sub/../../secret.png", "outside the image folder"),
        ("..\\secret.png", "outside the image folder"),
        ("/etc/passwd", "absolute path"),
        ("C:/Windows/x.png", "absolute path"),
    ],
)
def test_path_traversal_is_refused(dataset, file_name, match):
    folder, images, data = dataset
    data["images"][0]["file_name"] = file_name
    with pytest.raises(DataError, match=match):
        load_coco_captions(write_json(folder / "c.json", data), images)


def test_inner_dot_dot_that_stays_inside_is_fine(dataset):
    folder, images, data = dataset
    data["images"][0]["file_name"] = "sub/../a.png"
    pairs = load_coco_captions(write_json(folder / "c.json", data), images)
    assert pairs[0][0] == os.path.join(images, "a.png")


def test_missing_image_raises_or_is_skipped_with_a_count(dataset):
    folder, images, data = dataset
    os.remove(os.path.join(images, "a.png"))
    path = write_json(folder / "c.json", data)
    with pytest.raises(DataError, match=r"a\.png.*does not exist.*skip_missing=True"):
        load_coco_captions(path, images)
    with pytest.warns(UserWarning, match=r"Skipped 1 of 2 captioned images"):
        pairs = load_coco_captions(path, images, skip_missing=True)
    assert [os.path.basename(p) for p, _ in pairs] == ["b.png"]


def test_load_image_resizes_to_uint8_rgb(dataset):
    _, images, _ = dataset
    colour = load_image(os.path.join(images, "a.png"), 16)
    grey = load_image(os.path.join(images, "sub", "b.png"), (8, 12))
    assert colour.shape == (16, 16, 3) and colour.dtype == np.uint8
    assert grey.shape == (8, 12, 3) and grey.dtype == np.uint8
    assert (grey[..., 0] == grey[..., 2]).all()


def test_decode_image_works_in_tf_data(dataset):
    _, images, _ = dataset
    files = tf.data.Dataset.from_tensor_slices([os.path.join(images, "a.png")])
    out = next(iter(files.map(lambda f: decode_image(tf.io.read_file(f), 8))))
    assert out.shape == (8, 8, 3) and out.dtype == tf.uint8


def test_unreadable_image_is_named(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not an image")
    with pytest.raises(DataError, match="Cannot read image file.*broken.jpg"):
        load_image(broken, 8)
    with pytest.raises(DataError, match="gone.png.*does not exist"):
        load_image(tmp_path / "gone.png", 8)
    with pytest.raises(ValueError, match="size"):
        load_image(broken, (1, 2, 3))
