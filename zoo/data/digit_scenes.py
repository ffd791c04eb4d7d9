"""Captioned scenes of handwritten digits, built from scikit-learn's bundled digits: no download.

Each scene puts 1 to 4 digits from `sklearn.datasets.load_digits` (8x8 images, 1,797 of them),
scaled up to a small or a large size, on a dark noisy canvas, each in its own cell of a 3x3 grid
and without overlap. Its caption says which digits there are and where they stand:

    >>> scenes = make_scenes("train", 3, seed=0)
    >>> scenes[1].caption
    'a small one to the left of a large nine in the middle'

Each scene keeps every digit's box and class and the index of the word naming it in
`caption.split()`, so a captioner's attention can be scored: a word naming a digit is "localised"
when its attention peak falls inside that digit's box.

The caption grammar (a scene's caption is a function of its layout, so it can be learnt exactly):
- a digit is "a [small|large] <number word>" ("an eight"); the size is said for a lone digit
  and for two digits of different sizes;
- where it stands is its grid cell: "in the top left corner" (and the other three corners),
  "at the top", "at the bottom", "on the left", "on the right", "in the middle";
- one digit: "a single large five in the middle";
- two digits in one row: "a three to the left of a four at the top"; in one column:
  "a large seven on the left above a small two"; otherwise each with its cell, joined by "and":
  "a three in the top right corner and a four at the bottom";
- three or four digits: one phrase per row, top to bottom, digits left to right, joined by
  "with" then "and": "a two and a six at the top with a nine in the bottom right corner".
Captions are 7 to 24 words long, from 30 words in all (`VOCABULARY`).

The splits use disjoint sets of the sklearn images (70% / 15% / 15% of each class, fixed once for
all seeds), so no test digit image is ever seen in training.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

SPLITS = ("train", "validation", "test")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
VOCABULARY = tuple(
    sorted(
        set(NUMBER_WORDS)
        | set(
            "a an single small large in the top bottom left right corner middle at on to of above "
            "and with".split()
        )
    )
)

_SPLIT_FRACTIONS = (0.70, 0.15, 0.15)
_SPLIT_SEED = 1797  # fixed: the image split must not move with the scene seed
_ROW_PHRASE = ("at the top", "in the middle", "at the bottom")
_COLUMN_PHRASE = ("on the left", "in the middle", "on the right")


@dataclasses.dataclass(frozen=True, eq=False)
class Scene:
    """One captioned scene.

    Attributes:
        image: uint8 array `(image_size, image_size, 3)`, grey digits on a dark noisy canvas.
        caption: lower-case words separated by single spaces, no punctuation.
        boxes: int32 array `(n, 4)`, each digit's box as `(x0, y0, x1, y1)` in pixels,
            `x1`/`y1` exclusive (the digit covers `image[y0:y1, x0:x1]`).
        digits: the class (0-9) of each digit, in the order of `boxes`.
        digit_word_positions: for each digit, the index in `caption.split()` of the word naming it.
        sizes: `"small"` or `"large"` for each digit.
        source_indices: the index of each digit's image in `sklearn.datasets.load_digits()`.
    """

    image: np.ndarray
    caption: str
    boxes: np.ndarray
    digits: list[int]
    digit_word_positions: list[int]
    sizes: list[str]
    source_indices: list[int]


def caption_words(caption: str) -> list[str]:
    """Splits a caption into the words that `digit_word_positions` index."""
    return caption.split()


def digit_sizes(image_size: int) -> dict[str, int]:
    """Side in pixels of a small and a large digit on a canvas of `image_size`: 12 and 24 at 64."""
    small = max(8, round(image_size * 3 / 16))
    return {"small": small, "large": max(small + 4, round(image_size * 3 / 8))}


def split_indices(split: str) -> np.ndarray:
    """Indices into `load_digits()` of the digit images a split draws from (sorted)."""
    return _split_pool(_check_split(split))[0]


def make_scenes(
    split: str,
    count: int,
    seed: int = 0,
    image_size: int = 64,
    max_digits: int = 4,
    noise_std: float = 12.0,
) -> list[Scene]:
    """Makes `count` captioned digit scenes.

    The same arguments always give the same scenes, and a smaller `count` gives a prefix of a
    larger one. Different splits give different layouts as well as different digit images.

    Args:
        split: `"train"`, `"validation"` or `"test"`.
        count: number of scenes.
        seed: seed of the layouts, digit choices and noise. Defaults to `0`.
        image_size: side of the square canvas in pixels, at least 32. Defaults to `64`.
        max_digits: most digits in a scene, 1 to 4; each scene has between 1 and this many.
            Defaults to `4`.
        noise_std: standard deviation of the Gaussian pixel noise, on the 0-255 scale.
            Defaults to `12.0`.

    Returns:
        A list of `Scene`.
    """
    split = _check_split(split)
    if not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"`count` must be a non-negative integer, received {count!r}.")
    if not isinstance(image_size, (int, np.integer)) or image_size < 32:
        raise ValueError(f"`image_size` must be an integer >= 32, received {image_size!r}.")
    if max_digits not in (1, 2, 3, 4):
        raise ValueError(f"`max_digits` must be 1, 2, 3 or 4, received {max_digits!r}.")
    if noise_std < 0:
        raise ValueError(f"`noise_std` must be >= 0, received {noise_std!r}.")

    image_size = int(image_size)
    sizes = digit_sizes(image_size)
    indices, targets = _split_pool(split)
    patches = {name: _scaled_digits(split, side) for name, side in sizes.items()}
    rng = np.random.default_rng([int(seed), SPLITS.index(split)])
    # Each scene's noise is a random crop of one shared field: as random to the eye, and far
    # cheaper than drawing image_size**2 normal numbers per scene.
    noise = rng.standard_normal((2 * image_size, 2 * image_size), dtype=np.float32) * noise_std
    scenes = []
    for _ in range(int(count)):
        # One draw for the scene's scalars: digit count, 4 image picks, 4 inks, noise crop, light.
        u = rng.random(12).tolist()
        layout = _place_digits(rng, 1 + int(u[0] * max_digits), image_size, sizes)
        canvas = np.zeros((image_size, image_size), np.float32)
        picks = [int(v * len(indices)) for v in u[1 : 1 + len(layout)]]
        for (size_name, _, _, (x0, y0, x1, y1)), pick, ink in zip(
            layout, picks, u[5:9], strict=False
        ):
            digit = patches[size_name][pick] * (0.75 + 0.25 * ink)
            np.maximum(canvas[y0:y1, x0:x1], digit, out=canvas[y0:y1, x0:x1])
        dy, dx = int(u[9] * image_size), int(u[10] * image_size)
        canvas *= 255.0
        canvas += noise[dy : dy + image_size, dx : dx + image_size]
        canvas += 30.0 * u[11]  # background brightness varies between scenes
        grey = np.clip(canvas, 0, 255).astype(np.uint8)
        image = np.empty((image_size, image_size, 3), np.uint8)
        image[...] = grey[:, :, None]
        digits = [int(targets[p]) for p in picks]
        caption, word_positions = _caption(
            digits, [size for size, *_ in layout], [(row, col) for _, row, col, _ in layout]
        )
        scenes.append(
            Scene(
                image=image,
                caption=caption,
                boxes=np.array([box for *_, box in layout], np.int32).reshape(-1, 4),
                digits=digits,
                digit_word_positions=word_positions,
                sizes=[size for size, *_ in layout],
                source_indices=[int(indices[p]) for p in picks],
            )
        )
    return scenes


def _check_split(split):
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}, received {split!r}.")
    return split


@functools.lru_cache(maxsize=None)
def _digits():
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    data = load_digits()
    return (data.images / 16.0).astype(np.float32), data.target.astype(np.int64)


@functools.lru_cache(maxsize=None)
def _split_pool(split):
    """Sorted image indices and their classes for one split: a fixed per-class partition."""
    _, targets = _digits()
    rng = np.random.default_rng(_SPLIT_SEED)
    chosen = []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(targets == digit))
        cuts = np.round(np.cumsum(_SPLIT_FRACTIONS) * len(members)).astype(int)
        chosen.append(np.split(members, cuts[:-1])[SPLITS.index(split)])
    indices = np.sort(np.concatenate(chosen))
    return indices, targets[indices]


def _resize_matrix(source, target):
    """`(target, source)` bilinear interpolation matrix, pixel centres aligned."""
    coords = np.clip((np.arange(target) + 0.5) * source / target - 0.5, 0, source - 1)
    low = np.floor(coords).astype(int)
    high = np.minimum(low + 1, source - 1)
    frac = coords - low
    matrix = np.zeros((target, source), np.float32)
    matrix[np.arange(target), low] += 1 - frac
    matrix[np.arange(target), high] += frac
    return matrix


@functools.lru_cache(maxsize=None)
def _scaled_digits(split, side):
    images, _ = _digits()
    images = images[_split_pool(split)[0]]
    matrix = _resize_matrix(images.shape[1], side)
    return np.einsum("ij,njk,lk->nil", matrix, images, matrix)


def _place_digits(rng, count, image_size, sizes, tries=16):
    """Picks `count` distinct grid cells, a size and a box for each; no two boxes touch."""
    third = image_size / 3
    while True:
        cells = rng.permutation(9)[:count].tolist()
        # One draw per scene (cheaper than many small ones): a size coin and `tries` positions
        # per digit.
        draws = rng.random((count, 1 + 2 * tries)).tolist()
        layout = []
        for cell, (coin, *positions) in zip(cells, draws, strict=True):
            row, col = divmod(cell, 3)
            for size_name in ("large" if coin < 0.5 else "small", "small"):  # large may not fit
                box = _box_in_cell(positions, row, col, sizes[size_name], third, image_size, layout)
                if box is not None:
                    layout.append((size_name, row, col, box))
                    break
            else:
                break
        if len(layout) == count:
            return layout


def _box_in_cell(positions, row, col, side, third, image_size, placed):
    """The first of the candidate `positions` (uniforms in [0, 1)) whose box touches no other."""
    # The box's centre keeps a sixth of a cell away from the cell's edges, so which cell the
    # caption names is clear to see.
    margin = third / 6

    def start_range(index):
        low = max(0, math.ceil(index * third + margin - side / 2))
        high = min(image_size - side, math.floor((index + 1) * third - margin - side / 2))
        return low, high - low + 1

    (x_low, x_span), (y_low, y_span) = start_range(col), start_range(row)
    if x_span < 1 or y_span < 1:
        return None
    for u, v in zip(positions[::2], positions[1::2], strict=True):
        x0, y0 = x_low + int(u * x_span), y_low + int(v * y_span)
        box = (x0, y0, x0 + side, y0 + side)
        if not any(_touch(box, other) for *_, other in placed):
            return box
    return None


def _touch(a, b, gap=1):
    """Whether boxes `a` and `b` overlap or come closer than `gap` pixels."""
    return not (
        a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]
    )


def _cell_phrase(row, col):
    if row != 1 and col != 1:
        return f"in the {('top', '', 'bottom')[row]} {('left', '', 'right')[col]} corner"
    if row == 1:
        return _COLUMN_PHRASE[col]
    return _ROW_PHRASE[row]


def _caption(digits, sizes, cells):
    """Caption words for a layout, and the index of the word naming each digit."""
    # Sizes make long captions longer still, so they are said only where they are short.
    say_size = len(sizes) == 1 or (len(sizes) == 2 and sizes[0] != sizes[1])
    words, positions = [], [0] * len(digits)

    def say(*phrases):
        for phrase in phrases:
            words.extend(phrase.split())

    def say_digit(i, article="a"):
        size = sizes[i] if say_size else ""
        if article == "a" and not size and digits[i] == 8:
            article = "an"
        say(article, size)
        positions[i] = len(words)
        words.append(NUMBER_WORDS[digits[i]])

    order = sorted(range(len(digits)), key=lambda i: cells[i])  # top to bottom, left to right
    if len(order) == 1:
        (i,) = order
        say_digit(i, "a single")
        say(_cell_phrase(*cells[i]))
    elif len(order) == 2:
        i, j = order
        (row_i, col_i), (row_j, col_j) = cells[i], cells[j]
        if row_i == row_j:
            say_digit(i), say("to the left of"), say_digit(j), say(_ROW_PHRASE[row_i])
        elif col_i == col_j:
            say_digit(i), say(_COLUMN_PHRASE[col_i], "above"), say_digit(j)
        else:
            say_digit(i), say(_cell_phrase(row_i, col_i), "and")
            say_digit(j), say(_cell_phrase(row_j, col_j))
    else:
        rows = sorted({row for row, _ in cells})
        for n, row in enumerate(rows):
            if n:
                say("with" if n == 1 else "and")
            group = [i for i in order if cells[i][0] == row]
            for k, i in enumerate(group):
                if k:
                    say("and")
                say_digit(i)
            say(_cell_phrase(*cells[group[0]]) if len(group) == 1 else _ROW_PHRASE[row])
    return " ".join(words), positions
