"""SentencePiece subwords applied in the TensorFlow graph, a drop-in for `zoo.text.Vocabulary`.

One `SubwordTokenizer` is one SentencePiece model; whether source and target share one (a joint
vocabulary) or have one each is the caller's choice. Encoding and decoding run as TF ops
(`tensorflow_text.SentencepieceTokenizer`, built from the serialized model, so the model's bytes
are embedded in every `tf.function` and SavedModel that uses it); `encode_python` and
`decode_python` do the same with the `sentencepiece` package, for an app beside a TFLite model.

    >>> tokenizer = SubwordTokenizer.train(lines, vocab_size=8000)
    >>> ids = tokenizer.encode(tf.constant(["L'Éternel dit: Où es-tu?"]), add_start_end=True)
    >>> tokenizer.detokenize(ids)   # [b"L'\xc3\x89ternel dit: O\xc3\xb9 es-tu?"]

Ids follow `zoo.text`: 0 padding, 1 `[UNK]`, 2 `[START]`, 3 `[END]`, then the pieces. Text keeps
its case, punctuation and accents: invalid UTF-8 becomes U+FFFD and control characters spaces
(as in `zoo.text.normalize`), then SentencePiece's own `nfkc` rule applies Unicode NFKC (one
implementation, stored in the model, so the graph and Python paths cannot disagree) and collapses
whitespace. Byte fallback (on by default) spells characters never seen in training as UTF-8
bytes instead of `[UNK]`, so `detokenize(encode(text))` gives back any normalised text.
"""

from __future__ import annotations

import io
import os
import random
import re

import sentencepiece as spm
import tensorflow as tf
import tensorflow_text as tft

from zoo.errors import DataError
from zoo.text import END_ID, SPECIAL_TOKENS, START_ID, frame

# The pieces SentencePiece stores for ids 0-3; `tokens` shows them as zoo.text.SPECIAL_TOKENS.
_SPM_SPECIALS = ("[PAD]", "[UNK]", "[START]", "[END]")
_CONTROL = r"[\x00-\x1f\x7f]"
_CONTROL_RE = re.compile(_CONTROL)


def normalize(text: tf.Tensor) -> tf.Tensor:
    """`[B]` strings -> valid UTF-8 without control characters (NFKC is the model's own step)."""
    text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")
    return tf.strings.regex_replace(text, _CONTROL, " ")


def normalize_python(text: str | bytes) -> str:
    """`normalize` for one Python string (or UTF-8 bytes)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    else:  # lone surrogates cannot be encoded; they become U+FFFD like invalid bytes do
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return _CONTROL_RE.sub(" ", text)


class SubwordTokenizer(tf.Module):
    """A SentencePiece model with `zoo.text.Vocabulary`'s interface, applied with TF ops.

    A `tf.Module`, so assigning it to an attribute of a `tf.Module` (or Keras layer) that is
    saved with `tf.saved_model.save` tracks the tokenizer's resource for the SavedModel.

    Args:
        model_proto: A serialized SentencePiece model trained with ids 0-3 as `[PAD]`, `[UNK]`,
            `[START]`, `[END]` (what `SubwordTokenizer.train` writes).
    """

    def __init__(self, model_proto: bytes, name: str | None = None):
        super().__init__(name=name)
        processor = spm.SentencePieceProcessor()
        try:
            processor.LoadFromSerializedProto(model_proto)
        except (RuntimeError, OSError, TypeError) as e:
            raise ValueError(f"not a SentencePiece model ({str(e).strip() or type(e).__name__})") from None
        pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
        if tuple(pieces[: len(_SPM_SPECIALS)]) != _SPM_SPECIALS:
            raise ValueError(
                f"ids 0-3 must be {_SPM_SPECIALS}, got {tuple(pieces[:4])}; "
                "train the model with SubwordTokenizer.train"
            )
        # Plain attributes, kept out of tf.Module's tracking (a list would become a ListWrapper).
        self.model_proto = self._no_dependency(bytes(model_proto))
        self.tokens = self._no_dependency(list(SPECIAL_TOKENS) + pieces[len(SPECIAL_TOKENS):])
        self._processor = self._no_dependency(processor)
        # Created eagerly (even when first built inside a tf.function) so that the resource
        # belongs to this module and a SavedModel can track it.
        with tf.init_scope():
            self.tokenizer = tft.SentencepieceTokenizer(model=self.model_proto, out_type=tf.int32)
            self._strings = tf.constant(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    # Training, saving, loading.

    @classmethod
    def train(
        cls,
        lines,
        vocab_size: int,
        model_type: str = "unigram",
        character_coverage: float = 1.0,
        input_sentence_size: int = 1_000_000,
        seed: int = 0,
        byte_fallback: bool = True,
    ) -> "SubwordTokenizer":
        """Trains a model on an iterable of Python strings (one sentence each).

        At most `input_sentence_size` sentences are kept in memory: a longer stream is
        reservoir-sampled with `seed` (here, since SentencePiece's own sampling ignores any seed).
        The vocabulary has exactly `vocab_size` entries, specials and byte pieces included; a size
        the data cannot fill is a `DataError` that names the largest size that fits.

        Args:
            lines: Iterable of `str`, read once.
            vocab_size: Number of ids, the 4 special ids (and 256 byte pieces) included.
            model_type: `"unigram"` or `"bpe"`. Defaults to `"unigram"`.
            character_coverage: Share of characters the vocabulary must cover. Defaults to `1.0`.
            input_sentence_size: Most sentences trained on. Defaults to `1_000_000`.
            seed: Seed of the sampling. Defaults to `0`.
            byte_fallback: Spell unseen characters as UTF-8 byte pieces. Defaults to `True`.
        """
        if model_type not in ("unigram", "bpe"):
            raise DataError(f'model_type must be "unigram" or "bpe", got {model_type!r}')
        sample = _reservoir_sample(
            (normalize_python(line) for line in lines), input_sentence_size, seed
        )
        if not sample:
            raise DataError("no non-empty sentence to train a subword vocabulary on")
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sample),
                model_writer=model,
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=character_coverage,
                input_sentence_size=0,  # already sampled above
                byte_fallback=byte_fallback,
                normalization_rule_name="nfkc",
                pad_id=0, unk_id=1, bos_id=2, eos_id=3,
                pad_piece=_SPM_SPECIALS[0], unk_piece=_SPM_SPECIALS[1],
                bos_piece=_SPM_SPECIALS[2], eos_piece=_SPM_SPECIALS[3],
                # The model depends on the thread count: a fixed one makes it the same everywhere.
                num_threads=16,
                minloglevel=2,
            )
        except RuntimeError as e:
            raise DataError(_training_error(str(e), vocab_size)) from None
        return cls(model.getvalue())

    def save(self, path: str) -> None:
        """Writes the serialized model (a standard `.model` file) atomically."""
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(self.model_proto)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> "SubwordTokenizer":
        try:
            with open(path, "rb") as f:
                model_proto = f.read()
        except OSError as e:
            raise DataError(f"cannot read subword model {path}: {e}") from None
        try:
            return cls(model_proto)
        except ValueError as e:
            raise DataError(
                f"{path} is not a subword model of this project: {e}; "
                "train one with SubwordTokenizer.train and save it"
            ) from None

    # In the graph.

    def encode(self, texts, add_start_end: bool = False, max_length: int | None = None):
        """`[B]` strings -> `[B, (T)]` ragged int32 ids (optionally framed by START/END).

        `max_length` cuts the pieces before the framing, as `zoo.text.Vocabulary.encode` does.
        """
        return frame(self.tokenizer.tokenize(normalize(texts)), add_start_end, max_length)

    def strings(self, ids):
        """int ids (dense or ragged) -> piece strings (`""` for padding, `[START]`...)."""
        if isinstance(ids, tf.RaggedTensor):
            return ids.with_flat_values(tf.gather(self._strings, ids.flat_values))
        return tf.gather(self._strings, ids)

    def detokenize(self, ids):
        """`[B, T]` int ids, dense (padded with 0) or ragged -> `[B]` strings.

        Padding, `[START]` and `[END]` give nothing (SentencePiece control ids); `[UNK]` gives
        SentencePiece's `" ⁇ "`. Ids past `[END]` are the caller's to cut.
        """
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(tf.convert_to_tensor(ids))
        return self.tokenizer.detokenize(tf.cast(ids, tf.int32))

    # In Python (the sentencepiece package), with the same results.

    def encode_python(self, texts: list[str], add_start_end: bool = False,
                      max_length: int | None = None) -> list[list[int]]:
        """`encode` for Python strings, without TensorFlow."""
        rows = self._processor.encode([normalize_python(t) for t in texts], out_type=int)
        if max_length is not None:
            rows = [row[:max_length] for row in rows]
        if add_start_end:
            rows = [[START_ID] + row + [END_ID] for row in rows]
        return rows

    def decode_python(self, ids: list[list[int]]) -> list[str]:
        """`detokenize` for Python lists of ids, without TensorFlow."""
        return self._processor.decode([[int(i) for i in row] for row in ids])


def _reservoir_sample(lines, size: int, seed: int) -> list[str]:
    """At most `size` of the non-empty `lines` (all of them, in order, when there are fewer)."""
    rng = random.Random(seed)
    sample: list[str] = []
    seen = 0
    for line in lines:
        if not line.strip():
            continue
        seen += 1
        if len(sample) < size:
            sample.append(line)
        else:
            j = rng.randrange(seen)
            if j < size:
                sample[j] = line
    return sample


def _training_error(message: str, vocab_size: int) -> str:
    """SentencePiece's training error as one line that says what to change."""
    too_high = re.search(r"Vocabulary size too high \((\d+)\).*<= (\d+)", message)
    if too_high:
        return (
            f"vocab_size={vocab_size} is too large for this data (at most {too_high.group(2)} "
            "pieces can be made from it); choose a smaller vocab_size"
        )
    too_low = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", message)
    if too_low:
        return (
            f"vocab_size={vocab_size} is smaller than the {too_low.group(2)} characters, bytes "
            "and special ids the data needs; choose a larger vocab_size or a lower "
            "character_coverage"
        )
    message = " ".join(message.split())
    return f"training a subword vocabulary failed: {message}"
