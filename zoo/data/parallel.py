"""Parallel corpora in split files, streamed from disk: what OpenNMT-tf and fairseq users have.

A split is named by one string, either
- `path.tsv`: `source<TAB>target[<TAB>anything]` lines, or
- `source.txt,target.txt`: two plain-text files with one sentence per line, line n of one the
  translation of line n of the other.

`check_split` reads the files once, line by line (memory does not grow with the corpus), and
raises a one-line `DataError` for a missing or empty file, a path that is not a regular file, or
parallel files of different line counts. `pairs_dataset` streams the pairs as a `tf.data`
pipeline; `iter_pairs` streams them in Python (vocabulary training, evaluation).
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat

import tensorflow as tf

from zoo.errors import DataError


@dataclasses.dataclass(frozen=True)
class Split:
    """One split's files: a TSV (`target_path` empty) or a pair of parallel plain-text files."""

    name: str
    source_path: str
    target_path: str = ""

    @property
    def is_tsv(self) -> bool:
        return not self.target_path

    @property
    def paths(self) -> tuple[str, ...]:
        return (self.source_path,) if self.is_tsv else (self.source_path, self.target_path)

    def __str__(self) -> str:
        return ",".join(self.paths)


def parse_split(name: str, spec: str) -> Split:
    """`"train.tsv"` or `"train.en,train.fr"` -> a `Split` (files not read yet)."""
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) == 1 and parts[0]:
        return Split(name, parts[0])
    if len(parts) == 2 and all(parts):
        return Split(name, parts[0], parts[1])
    raise DataError(
        f"{name}={spec!r}: expected a .tsv file (source<TAB>target lines) or two parallel "
        f"text files separated by a comma, e.g. {name}=data/{name}.en,data/{name}.fr"
    )


def _line_count(path: str, split: str) -> int:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"{split} file {path} does not exist") from None
    except OSError as e:
        raise DataError(f"cannot read {split} file {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{split} file {path} is not a regular file (a folder, FIFO or device?)")
    count, blank = 0, 0
    try:
        with open(path, "rb") as f:
            for line in f:
                count += 1
                blank += not line.strip()
    except OSError as e:
        raise DataError(f"cannot read {split} file {path}: {e.strerror}") from None
    if count == blank:
        raise DataError(f"{split} file {path} is empty; give a file with one sentence per line")
    return count


def check_split(split: Split) -> int:
    """Checks a split's files; returns its line count. One-line `DataError`s name the problem."""
    counts = [_line_count(path, split.name) for path in split.paths]
    if len(counts) == 2 and counts[0] != counts[1]:
        raise DataError(
            f"{split.name} files are not parallel: {split.source_path} has {counts[0]} lines, "
            f"{split.target_path} has {counts[1]}; line n of one must translate line n of the other"
        )
    if split.is_tsv:
        with open(split.source_path, "rb") as f:
            if not any(b"\t" in line for _, line in zip(range(1000), f, strict=False)):
                raise DataError(
                    f"{split.name} file {split.source_path} has no tab in its first lines: a .tsv "
                    "needs source<TAB>target lines (for two plain-text files, give "
                    f"{split.name}=SOURCE,TARGET)"
                )
    return counts[0]


_SPACES = re.compile(r"[\t\n\f\r ]+")  # RE2's \s, which the tf.data path uses


def _clean(text: str) -> str:
    # As `pairs_dataset`: TextLineDataset drops every "\r", tf.strings.strip strips "\v" too.
    return _SPACES.sub(" ", text.replace("\r", "")).strip(" \t\n\v\f\r")


def iter_pairs(split: Split):
    """Yields the split's `(source, target)` pairs as Python strings, streaming; lines with an
    empty side (or, in a TSV, without a tab) are skipped, as `pairs_dataset` skips them."""
    if split.is_tsv:
        # Lines end at "\n" only, as check_split counts them and TextLineDataset reads them: a
        # lone "\r" must not split a line (universal newlines would, misaligning the pairs).
        with open(split.source_path, encoding="utf-8", errors="replace", newline="\n") as f:
            for line in f:
                fields = line.rstrip("\r\n").split("\t")
                if len(fields) >= 2:
                    source, target = _clean(fields[0]), _clean(fields[1])
                    if source and target:
                        yield source, target
        return
    with open(split.source_path, encoding="utf-8", errors="replace", newline="\n") as fs, open(
        split.target_path, encoding="utf-8", errors="replace", newline="\n"
    ) as ft:
        for source, target in zip(fs, ft, strict=True):
            source, target = _clean(source), _clean(target)
            if source and target:
                yield source, target


def read_pairs(split: Split) -> list[tuple[str, str]]:
    """All of a (small: validation, test) split's pairs in memory."""
    return list(iter_pairs(split))


def _squeeze_spaces(text):
    return tf.strings.strip(tf.strings.regex_replace(text, r"\s+", " "))


def pairs_dataset(split: Split) -> tf.data.Dataset:
    """The split as a `tf.data.Dataset` of `(source, target)` string scalars, read from disk as
    it goes (nothing is held in memory); the same pairs as `iter_pairs`."""
    # Named functions, not lambdas: tf.data's AutoGraph reads a function's source to convert it.
    def fields(line):
        return tf.strings.split(line, "\t")

    def has_two(f):
        return tf.size(f) >= 2

    def first_two(f):
        return _squeeze_spaces(f[0]), _squeeze_spaces(f[1])

    def both_sides(s, t):
        return tf.logical_and(tf.strings.length(s) > 0, tf.strings.length(t) > 0)

    if split.is_tsv:
        lines = tf.data.TextLineDataset(split.source_path)
        pairs = lines.map(fields).filter(has_two).map(first_two)
    else:
        pairs = tf.data.Dataset.zip(
            tf.data.TextLineDataset(split.source_path).map(_squeeze_spaces),
            tf.data.TextLineDataset(split.target_path).map(_squeeze_spaces),
        )
    return pairs.filter(both_sides)
