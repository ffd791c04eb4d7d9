"""The captioning recipe's data: generated digit scenes (their boxes let the attention be scored)
or a user's COCO-format captions, the caption vocabulary, and the `tf.data` pipelines."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf

from recipes import training
from recipes.captioning.config import CaptioningConfig
from zoo import text
from zoo.data import coco, digit_scenes
from zoo.errors import DataError


@dataclasses.dataclass
class CaptionSplit:
    """Images of one split with their reference captions (tokenised, each a list of words)
    and, for digit scenes, the scenes (boxes, digits, digit word positions)."""

    images: np.ndarray
    references: list
    scenes: list | None = None

    def __len__(self):
        return len(self.images)


@dataclasses.dataclass
class CaptionData:
    train: CaptionSplit
    validation: CaptionSplit
    test: CaptionSplit
    vocab: text.Vocabulary
    report: str
    examples: tuple = ()  # (train, validation) captions as ids: `encode_examples` of each


def _tokenised(captions, config):
    return [t[: config.max_caption_length] for t in text.python_tokens(list(captions))]


def _digit_split(name, count, config):
    scenes = digit_scenes.make_scenes(
        name, count, seed=config.seed, image_size=config.image_size, max_digits=config.max_digits
    )
    references = [[words] for words in _tokenised([s.caption for s in scenes], config)]
    images = np.stack([s.image for s in scenes]) if scenes else np.zeros((0,) * 4, np.uint8)
    return CaptionSplit(images, references, scenes)


def _coco_splits(config):
    json_path, image_dir = config.coco_paths()
    pairs = coco.load_coco_captions(json_path, image_dir)
    if len(pairs) < 3:
        raise DataError(
            f"{json_path} has {len(pairs)} captioned images; at least 3 are needed (train, "
            "validation, test)"
        )
    order = np.random.default_rng(config.seed).permutation(len(pairs))
    held = max(1, len(pairs) // 10)
    n_test, n_val = min(config.test_size, held), min(config.validation_size, held)
    parts = {
        "test": order[:n_test],
        "validation": order[n_test : n_test + n_val],
        "train": order[n_test + n_val :],
    }
    splits = {}
    for name, indices in parts.items():
        indices = sorted(indices)
        images = np.stack([coco.load_image(pairs[i][0], config.image_size) for i in indices])
        flat = [c for i in indices for c in pairs[i][1]]
        tokens, references, at = _tokenised(flat, config), [], 0
        for i in indices:
            references.append(tokens[at : at + len(pairs[i][1])])
            at += len(pairs[i][1])
        splits[name] = CaptionSplit(images, references)
    report = f"COCO-format captions {json_path} ({len(pairs)} images from {image_dir})"
    return splits["train"], splits["validation"], splits["test"], report


def load_splits(config: CaptioningConfig):
    """`(train, validation, test, report)` for the config's data."""
    if config.coco_paths() is None:
        splits = [
            _digit_split(name, count, config)
            for name, count in (
                ("train", config.train_size),
                ("validation", config.validation_size),
                ("test", config.test_size),
            )
        ]
        return (*splits, f"digit scenes of {config.image_size}x{config.image_size}")
    return _coco_splits(config)


def build_data(config: CaptioningConfig, vocab_dir: str | None = None) -> CaptionData:
    """Loads the splits and the vocabulary (built from the training captions, or read back)."""
    train, validation, test, report = load_splits(config)
    path = vocab_dir and os.path.join(vocab_dir, "vocab.txt")
    if path and os.path.exists(path):
        vocab = text.Vocabulary.load(path)
    else:
        vocab = text.Vocabulary.build(
            [words for refs in train.references for words in refs],
            config.max_vocab_size,
            config.min_count,
        )
    return CaptionData(train, validation, test, vocab, report)


def encode_examples(split: CaptionSplit, vocab: text.Vocabulary):
    """One training example per (image, reference): image indices and START/END-framed ids."""
    image_index = [i for i, refs in enumerate(split.references) for _ in refs]
    words = [w for refs in split.references for w in refs]
    ids = vocab.ids(tf.ragged.constant(words, dtype=tf.string, ragged_rank=1)).to_list()
    return np.asarray(image_index, np.int64), [
        np.asarray([text.START_ID, *row, text.END_ID], np.int32) for row in ids
    ]


def batches(images, image_index, targets, batch_size, seed, epoch, shuffle=True):
    """Batches of captions of similar length (little padding); the order is a pure function of
    (seed, epoch), so a resumed run sees the same batches."""
    order = np.arange(len(targets))
    rng = np.random.default_rng([seed, epoch])
    if shuffle:
        rng.shuffle(order)
    window = batch_size * 32
    chunks = []
    for i in range(0, len(order), window):
        part = sorted(order[i : i + window], key=lambda j: len(targets[j]))
        chunks += [part[k : k + batch_size] for k in range(0, len(part), batch_size)]
    if shuffle:
        rng.shuffle(chunks)
    for idx in chunks:
        rows = [targets[j] for j in idx]
        target = np.zeros((len(rows), max(len(r) for r in rows)), np.int32)
        for n, row in enumerate(rows):
            target[n, : len(row)] = row
        yield {"image": images[image_index[idx]], "target_in": target[:, :-1]}, target[:, 1:]


def epoch_examples(split, examples, config, vocab, epoch):
    """`(images, examples)` an epoch trains on: the split itself, or with `fresh_scenes` (digit
    scenes, `vocab` given) new scenes for every epoch after the first, drawn from the seed and
    the epoch."""
    if epoch == 0 or vocab is None or not config.fresh_scenes or split.scenes is None:
        return split.images, examples
    fresh = _digit_split(
        "train", len(split), dataclasses.replace(config, seed=config.seed + 100_003 * epoch)
    )
    return fresh.images, encode_examples(fresh, vocab)


def make_dataset(split, examples, config, first_epoch=0, shuffle=True, vocab=None):
    """A repeating `tf.data.Dataset` of batches; each pass over it is the next epoch. Given the
    vocabulary, a digit-scene training split is redrawn each epoch (see `epoch_examples`)."""
    epoch = [first_epoch]
    size = split.images.shape[1:]

    def gen():
        images, (image_index, targets) = epoch_examples(split, examples, config, vocab, epoch[0])
        yield from batches(
            images, image_index, targets, config.batch_size, config.seed, epoch[0], shuffle
        )
        epoch[0] += 1

    spec = (
        {
            "image": tf.TensorSpec((None, *size), tf.uint8),
            "target_in": tf.TensorSpec((None, None), tf.int32),
        },
        tf.TensorSpec((None, None), tf.int32),
    )
    return training.epoch_dataset(gen, spec)


def steps_for(examples, config) -> int:
    n, window = len(examples[1]), config.batch_size * 32
    return sum(-(-min(window, n - i) // config.batch_size) for i in range(0, n, window))
