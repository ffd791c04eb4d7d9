"""Text in the graph: normalisation, tokenisation and vocabularies with tensorflow-text.

Everything here is TensorFlow ops (tensorflow-text ops among them), so the same code runs in the
`tf.data` pipeline, in training, and inside an exported SavedModel that takes raw strings.
"""

from __future__ import annotations

import collections
import os

import tensorflow as tf
import tensorflow_text as tft

from zoo.errors import DataError

PAD, UNK, START, END = "", "[UNK]", "[START]", "[END]"
SPECIAL_TOKENS = (PAD, UNK, START, END)
PAD_ID, UNK_ID, START_ID, END_ID = 0, 1, 2, 3

# Punctuation is split off into tokens of its own; hyphens and apostrophes stay inside words
# ("vingt-deux", "l'an"), which keeps number words whole.
_PUNCTUATION = r"""([.,!?;:¿¡"()\[\]«»…])"""
_SPACE_BEFORE_PUNCT = r""" ([.,!?;:…)\]»])"""


def normalize(text: tf.Tensor) -> tf.Tensor:
    """Lower-cased, NFKC-normalised strings with punctuation spaced out.

    Invalid UTF-8 is replaced (U+FFFD), never an error, so a bad request cannot crash a server;
    control characters (tabs, newlines, NUL...) become spaces.
    """
    text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")
    text = tf.strings.regex_replace(text, r"[\x00-\x1f\x7f]", " ")
    text = tft.normalize_utf8(text, "NFKC")
    text = tf.strings.lower(text, encoding="utf-8")
    return tf.strings.regex_replace(text, _PUNCTUATION, r" \1 ")


_TOKENIZER = None


def tokenize(text: tf.Tensor) -> tf.RaggedTensor:
    """`[B]` strings -> `[B, (T)]` ragged string tokens."""
    global _TOKENIZER
    if _TOKENIZER is None:
        _TOKENIZER = tft.WhitespaceTokenizer()
    return _TOKENIZER.tokenize(normalize(text))


def detokenize(tokens: tf.RaggedTensor) -> tf.Tensor:
    """`[B, (T)]` ragged string tokens -> `[B]` strings, no space before closing punctuation."""
    text = tf.strings.reduce_join(tokens, axis=-1, separator=" ")
    return tf.strings.regex_replace(text, _SPACE_BEFORE_PUNCT, r"\1")


def python_tokens(texts: list[str], batch_size: int = 4096) -> list[list[str]]:
    """Tokenises Python strings with the graph tokenizer (so vocabularies match it exactly)."""
    out: list[list[str]] = []
    for i in range(0, len(texts), batch_size):
        tokens = tokenize(tf.constant(texts[i : i + batch_size])).to_list()
        out.extend([[t.decode("utf-8") for t in row] for row in tokens])
    return out


def frame(ids: tf.RaggedTensor, add_start_end: bool = False, max_length: int | None = None):
    """Ragged ids `[B, (T)]` cut to `max_length`, then framed by `[START]` ... `[END]`."""
    if max_length is not None:
        ids = ids[:, :max_length]
    if add_start_end:
        n = ids.nrows()
        start = tf.fill([n, 1], START_ID)
        end = tf.fill([n, 1], END_ID)
        ids = tf.concat([tf.cast(start, ids.dtype), ids, tf.cast(end, ids.dtype)], axis=1)
    return ids


class Vocabulary:
    """A token list with the special tokens first; maps tokens <-> ids in the graph.

    Ids: 0 padding, 1 `[UNK]`, 2 `[START]`, 3 `[END]`, then tokens by falling frequency.
    """

    def __init__(self, tokens: list[str]):
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(
                f"a vocabulary must start with {SPECIAL_TOKENS}, got {tokens[:4]}; "
                "build it with Vocabulary.build or Vocabulary.load"
            )
        self.tokens = list(tokens)
        self._table = None
        self._strings = None

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(cls, token_lists, max_size: int | None = None, min_count: int = 1) -> "Vocabulary":
        counts = collections.Counter(t for row in token_lists for t in row)
        for special in SPECIAL_TOKENS:
            counts.pop(special, None)
        common = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        words = [w for w, c in common if c >= min_count]
        if max_size is not None:
            words = words[: max(0, max_size - len(SPECIAL_TOKENS))]
        return cls(list(SPECIAL_TOKENS) + words)

    def save(self, path: str) -> None:
        # One token per line; line 0 is the (empty) padding token.
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\n".join(self.tokens) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> "Vocabulary":
        try:
            with open(path, encoding="utf-8") as f:
                tokens = f.read().split("\n")[:-1]
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"cannot read vocabulary file {path}: {e}") from None
        try:
            return cls(tokens)
        except ValueError as e:
            raise DataError(f"{path} is not a vocabulary file: {e}") from None

    def _lookup_table(self):
        if self._table is None:
            keys = tf.constant(self.tokens[1:])  # the empty padding string is never looked up
            values = tf.range(1, len(self.tokens), dtype=tf.int64)
            init = tf.lookup.KeyValueTensorInitializer(keys, values)
            self._table = tf.lookup.StaticHashTable(init, default_value=UNK_ID)
            self._strings = tf.constant(self.tokens)
        return self._table

    def ids(self, tokens):
        """String tokens (dense or ragged) -> int32 ids; unknown tokens become `[UNK]`."""
        table = self._lookup_table()
        if isinstance(tokens, tf.RaggedTensor):
            return tf.cast(tokens.with_flat_values(table.lookup(tokens.flat_values)), tf.int32)
        return tf.cast(table.lookup(tokens), tf.int32)

    def strings(self, ids):
        """int ids (dense or ragged) -> string tokens."""
        self._lookup_table()
        if isinstance(ids, tf.RaggedTensor):
            return ids.with_flat_values(tf.gather(self._strings, ids.flat_values))
        return tf.gather(self._strings, ids)

    def encode(self, texts, add_start_end: bool = False, max_length: int | None = None):
        """`[B]` strings -> `[B, (T)]` ragged int32 ids (optionally framed by START/END)."""
        return frame(self.ids(tokenize(texts)), add_start_end, max_length)

    def detokenize(self, ids):
        """int ids `[B, T]` (dense, padded with 0, or ragged) -> `[B]` strings: the tokens with
        padding, `[START]` and `[END]` dropped, joined as `detokenize` joins them."""
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(tf.convert_to_tensor(ids))
        ids = tf.ragged.boolean_mask(ids, tf.logical_and(ids != PAD_ID, ids > END_ID) | (ids == UNK_ID))
        return detokenize(self.strings(ids))
