import numpy as np
import pytest

from zoo.data import digit_scenes
from zoo.data.digit_scenes import NUMBER_WORDS, SPLITS, VOCABULARY, caption_words, make_scenes


@pytest.fixture(scope="module")
def scenes():
    return make_scenes("train", 2000, seed=0)


def test_scene_fields_agree(scenes):
    for scene in scenes:
        n = len(scene.digits)
        assert 1 <= n <= 4
        assert scene.image.shape == (64, 64, 3) and scene.image.dtype == np.uint8
        assert scene.boxes.shape == (n, 4) and scene.boxes.dtype == np.int32
        assert len(scene.digit_word_positions) == len(scene.sizes) == len(scene.source_indices) == n
        words = caption_words(scene.caption)
        for digit, position in zip(scene.digits, scene.digit_word_positions, strict=True):
            assert words[position] == NUMBER_WORDS[digit]
        # Every number word in the caption names exactly one digit.
        named = sorted(i for i, w in enumerate(words) if w in NUMBER_WORDS)
        assert named == sorted(scene.digit_word_positions)


def test_boxes_inside_canvas_without_overlap_and_hold_ink(scenes):
    for scene in scenes:
        boxes = scene.boxes
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 64).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                overlap = a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
                assert not overlap, (scene.caption, boxes)
    # Digits are bright on a dark background: boxes are brighter than the rest on average.
    inside, outside = [], []
    for scene in scenes[:200]:
        mask = np.zeros((64, 64), bool)
        for x0, y0, x1, y1 in scene.boxes:
            mask[y0:y1, x0:x1] = True
        grey = scene.image[..., 0].astype(float)
        inside.append(grey[mask].mean())
        outside.append(grey[~mask].mean())
    assert np.mean(inside) > np.mean(outside) + 30


def test_captions_vary_in_length_use_the_vocabulary_and_mention_sizes(scenes):
    lengths = [len(caption_words(s.caption)) for s in scenes]
    assert min(lengths) >= 3 and max(lengths) <= 26
    assert max(lengths) - min(lengths) >= 12
    words = {w for s in scenes for w in caption_words(s.caption)}
    assert words == set(VOCABULARY)
    assert len({s.caption for s in scenes}) > len(scenes) / 2
    assert {len(s.digits) for s in scenes} == {1, 2, 3, 4}
    sizes = digit_scenes.digit_sizes(64)
    assert sizes == {"small": 12, "large": 24}
    for scene in scenes:
        sides = scene.boxes[:, 2] - scene.boxes[:, 0]
        assert [sizes[name] for name in scene.sizes] == sides.tolist()


@pytest.mark.parametrize(
    "digits, sizes, cells, expected",
    [
        ([5], ["large"], [(1, 1)], "a single large five in the middle"),
        ([7, 2], ["large", "small"], [(0, 0), (2, 0)], "a large seven on the left above a small two"),
        ([3, 4], ["small", "small"], [(0, 2), (2, 1)], "a three in the top right corner and a four at the bottom"),
        ([4, 3], ["small", "small"], [(0, 2), (0, 0)], "a three to the left of a four at the top"),
        ([2, 6, 9], ["small", "large", "small"], [(0, 0), (0, 2), (2, 2)], "a two and a six at the top with a nine in the bottom right corner"),
        ([1, 8, 0, 8], ["small"] * 4, [(2, 1), (1, 0), (0, 1), (1, 2)], "a zero at the top with an eight and an eight in the middle and a one at the bottom"),
    ],
)  # fmt: skip
def test_caption_grammar(digits, sizes, cells, expected):
    caption, positions = digit_scenes._caption(digits, sizes, cells)
    assert caption == expected
    words = caption.split()
    assert [words[p] for p in positions] == [NUMBER_WORDS[d] for d in digits]


def test_region_words_match_where_the_digit_is(scenes):
    # A lone digit's caption names its grid cell; check it against the box centre.
    for scene in (s for s in scenes if len(s.digits) == 1):
        x0, y0, x1, y1 = scene.boxes[0]
        row, col = int((y0 + y1) / 2 // (64 / 3)), int((x0 + x1) / 2 // (64 / 3))
        assert digit_scenes._cell_phrase(row, col) in scene.caption


def test_deterministic_by_seed_and_prefix_stable():
    a, b = make_scenes("validation", 30, seed=7), make_scenes("validation", 10, seed=7)
    for x, y in zip(a[:10], b, strict=True):
        assert x.caption == y.caption and np.array_equal(x.image, y.image)
        assert np.array_equal(x.boxes, y.boxes) and x.digits == y.digits
    c = make_scenes("validation", 30, seed=8)
    assert [s.caption for s in a] != [s.caption for s in c]


def test_splits_use_disjoint_digit_images():
    pools = {split: set(digit_scenes.split_indices(split).tolist()) for split in SPLITS}
    assert not pools["train"] & pools["validation"]
    assert not pools["train"] & pools["test"]
    assert not pools["validation"] & pools["test"]
    assert sum(len(p) for p in pools.values()) == 1797
    for split in SPLITS:
        used = {i for s in make_scenes(split, 300, seed=1) for i in s.source_indices}
        assert used <= pools[split]


def test_other_image_sizes():
    for size in (32, 96):
        scene = make_scenes("test", 20, seed=0, image_size=size)[-1]
        assert scene.image.shape == (size, size, 3)
        assert scene.boxes.max() <= size


def test_ten_thousand_scenes_are_fast():
    import time

    start = time.perf_counter()
    make_scenes("train", 10_000, seed=3)
    assert time.perf_counter() - start < 20  # a few seconds; loose for a shared CPU


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"split": "dev"}, "split"),
        ({"count": -1}, "count"),
        ({"image_size": 16}, "image_size"),
        ({"max_digits": 5}, "max_digits"),
    ],
)
def test_bad_arguments(kwargs, match):
    arguments = {"split": "train", "count": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_scenes(**arguments)
