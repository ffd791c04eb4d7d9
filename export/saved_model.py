"""SavedModels for TF Serving: versioned folders, `models.config`, and the nmt signatures.

Layout written under an exports root (default `exports/`):

    exports/
      models.config                 TF Serving model config listing every model below
      nmt/
        1/                          one integer version per export, never overwritten
          saved_model.pb
          variables/
          assets.extra/tf_serving_warmup_requests
        2/ ...

A version is built in a temporary folder `exports/.tmp-<recipe>-*` (outside every model's base
path, so a server never sees it) and then renamed into place, so a server watching
`exports/<recipe>/` only ever sees complete versions.

The nmt SavedModel takes raw strings and does everything in the graph with TensorFlow and
tensorflow-text ops (the ops TF Serving links since 2.2), so it loads in any process that has
`tensorflow` and `tensorflow_text` and none of this project's code. Signatures:

- `serving_default`: beam search with the run's `beam_size`, `length_penalty` and
  `coverage_penalty` (greedy when `beam_size` is 1).
- `greedy`: greedy search.

Both take `text`: string `[B]` and return

- `translation`: string `[B]`, the detokenised translation.
- `source_tokens`: string `[B, T_in]`, the normalised source tokens the model saw (after
  truncation), padded with `""`.
- `target_tokens`: string `[B, T_out]`, the output tokens, then `"[END]"` where the model emitted
  it, padded with `""`.
- `attention`: float32 `[B, T_out, T_in]`: `attention[b, t, s]` is the weight output token
  `target_tokens[b, t]` put on `source_tokens[b, s]`. Each row of a real output token sums to 1
  over the real source tokens; padding rows and columns are 0.
- `score`: float32 `[B]`: the hypothesis score (beam search: GNMT's penalised score; greedy: the
  sum of the token log-probabilities, the end token included).

Requests that are not ordinary sentences give outputs, never an error:

- Empty (or whitespace-only) string: no source tokens; the model decodes from an empty source
  (an all-padding input of width 1), which gives whatever the model says for nothing, usually
  a short or empty translation. `source_tokens` is one `""`, its attention column is 0.
- Longer than the run's `max_source_length` tokens: only the first `max_source_length` tokens
  are translated (the rest are dropped, as in training); `source_tokens` shows what was kept.
  The translation is at most `max_target_length` tokens long (and at most
  `2 * source tokens + 10`).
- Invalid UTF-8: each bad byte becomes U+FFFD, as do control characters (`zoo.text.normalize`).
- Unknown words: looked up as `[UNK]`; when the run's `replace_unk` setting is on (`true`, or
  `auto` with a TSV corpus), each output `[UNK]` is replaced by the source token its attention
  peaks on, as `recipes.translator.Translator.translate` does.
- An empty batch (`[0]` strings): empty outputs of the shapes above.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile

import keras
import tensorflow as tf

from zoo import decoding
from zoo import text as zoo_text

# -- versioned layout ------------------------------------------------------------------------

TEMP_PREFIX = ".tmp-"


def versions(model_dir: str) -> list[int]:
    """The integer versions present in `exports/<recipe>/`, ascending."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(n) for n in os.listdir(model_dir) if re.fullmatch(r"\d+", n))


def write_version(exports_root: str, name: str, write) -> str:
    """Calls `write(folder)` on a fresh temporary folder, then renames it to the next version.

    The temporary folder sits in `exports_root` itself, outside `exports_root/name` (TF
    Serving's base path for the model), so a server never sees a half-written version. A version
    that appears meanwhile (a concurrent export) is never touched: the rename moves on to the
    next free number. Returns the final folder.
    """
    model_dir = os.path.join(exports_root, name)
    os.makedirs(model_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{name}-", dir=exports_root)
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a server may run as another user
        write(tmp)
        version = (versions(model_dir) or [0])[-1] + 1
        while True:
            final = os.path.join(model_dir, str(version))
            if not os.path.exists(final):
                try:
                    os.rename(tmp, final)
                    return final
                except OSError:
                    if not os.path.exists(final):
                        raise
            version += 1
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def served_models(exports_root: str) -> list[str]:
    """Names of the folders under `exports_root` that hold at least one SavedModel version."""
    if not os.path.isdir(exports_root):
        return []
    names = []
    for name in sorted(os.listdir(exports_root)):
        model_dir = os.path.join(exports_root, name)
        if name.startswith(".") or not os.path.isdir(model_dir):
            continue
        if any(
            os.path.exists(os.path.join(model_dir, str(v), "saved_model.pb"))
            for v in versions(model_dir)
        ):
            names.append(name)
    return names


def write_models_config(exports_root: str, base_path: str = "/models") -> str:
    """Writes `exports_root/models.config` listing every exported model; returns its path.

    `base_path` is where `exports_root` is mounted in the server, `/models` for
    `docker run -v $PWD/exports:/models tensorflow/serving --model_config_file=/models/models.config`.
    The file is TF Serving's `ModelServerConfig` in protobuf text format; each model serves its
    latest version.
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    for name in served_models(exports_root):
        entry = config.model_config_list.config.add()
        entry.name = name
        entry.base_path = f"{base_path.rstrip('/')}/{name}"
        entry.model_platform = "tensorflow"
    path = os.path.join(exports_root, "models.config")
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text_format.MessageToString(config))
    os.replace(tmp, path)
    return path


# -- nmt in TensorFlow ops -------------------------------------------------------------------


def vocabulary_table(tokens: list[str]) -> tf.lookup.StaticHashTable:
    """token -> id as `zoo.text.Vocabulary.ids` does: unknown tokens give `[UNK]`'s id.

    Built from constants, so the table lives in the SavedModel's graph with no asset file.
    """
    keys = tf.constant(tokens[1:])  # the empty padding token is never looked up
    values = tf.range(1, len(tokens), dtype=tf.int64)
    init = tf.lookup.KeyValueTensorInitializer(keys, values)
    return tf.lookup.StaticHashTable(init, default_value=zoo_text.UNK_ID)


def _pad_to_width(x, width, value):
    """Pads the last axis of `x` `[B, T]` (or `[B, T, S]` along T's axis) up to `width`."""
    missing = tf.maximum(width - tf.shape(x)[1], 0)
    paddings = tf.concat([[[0, 0], [0, missing]], tf.zeros([tf.rank(x) - 2, 2], tf.int32)], 0)
    return tf.pad(x, paddings, constant_values=value)


def max_decode_length(source_lengths, max_target_length: int):
    """The step limit for a batch, as `Translator.max_decode_length` computes it: twice the
    longest source plus 10, at most `max_target_length + 1` (the end token included)."""
    longest = tf.reduce_max(tf.concat([source_lengths, [0]], 0))
    return tf.minimum(2 * longest + 10, max_target_length + 1)


def replace_unknown(words, target_ids, lengths, source_tokens, source_lengths, attention):
    """Replaces each output `[UNK]` by the source token its attention row peaks on.

    Args:
        words: string `[B, T]` output tokens; `target_ids`: their int ids `[B, T]`.
        lengths: int `[B]`, the number of real output tokens (later positions are left alone).
        source_tokens: string `[B, S]`; `source_lengths`: int `[B]` (a sentence without source
            tokens keeps its `[UNK]`s).
        attention: float `[B, T, S]`.
    """
    positions = tf.range(tf.shape(words)[1])[None, :]
    peak = tf.argmax(attention, axis=-1, output_type=tf.int32)
    peak_token = tf.gather(source_tokens, peak, batch_dims=1)
    replace = (
        tf.equal(target_ids, zoo_text.UNK_ID)
        & (positions < lengths[:, None])
        & (source_lengths[:, None] > 0)
    )
    return tf.where(replace, peak_token, words)


class NmtGraph:
    """The nmt model from raw strings to translations, in TensorFlow ops.

    Args:
        model: a built `zoo.models.Seq2Seq`.
        source_tokens, target_tokens: the run's vocabularies (token lists, specials first).
        config: the run's `NmtConfig` (max lengths, beam settings, `replace_unk`).
        replace_unk: overrides the run's setting; `None` follows it as `Translator` does.
    """

    def __init__(self, model, source_tokens, target_tokens, config, replace_unk=None):
        self.model = model
        self.config = config
        self.source_table = vocabulary_table(source_tokens)
        self.target_strings = tf.constant(target_tokens)
        if replace_unk is None:
            setting = config.replace_unk
            replace_unk = setting == "true" or (setting == "auto" and config.data != "num2words")
        # Without attention there is nothing to point at.
        self.replace_unk = bool(replace_unk) and model.decoder.attention is not None

    def tokenize(self, text):
        """`[B]` strings -> (string tokens `[B, T_in]`, int32 ids `[B, T_in]`), `T_in >= 1`."""
        tokens = zoo_text.tokenize(text)[:, : self.config.max_source_length]
        ids = tf.cast(tokens.with_flat_values(self.source_table.lookup(tokens.flat_values)), tf.int32)
        # Width at least 1, as Translator pads: an all-empty batch still has a source position.
        return _pad_to_width(tokens.to_tensor(""), 1, ""), _pad_to_width(ids.to_tensor(0), 1, 0)

    def decode(self, source_ids, beam_size: int):
        """int32 `[B, S]` ids -> dict of tokens `[B, T]`, lengths `[B]`, attention `[B, T, S']`,
        score `[B]`, from greedy (`beam_size == 1`) or beam search; `S'` is 0 without attention."""
        config = self.config
        source_lengths = tf.reduce_sum(tf.cast(source_ids != 0, tf.int32), 1)
        max_length = max_decode_length(source_lengths, config.max_target_length)
        step_fn, state, constants = self.model.decoding_inputs(source_ids)
        start = tf.fill(tf.shape(source_ids)[:1], zoo_text.START_ID)
        if beam_size == 1:
            return decoding.greedy_search(
                step_fn, state, constants, start, zoo_text.END_ID, max_length
            )
        out = decoding.beam_search(
            step_fn, state, constants, start, zoo_text.END_ID, max_length,
            beam_size=beam_size, length_penalty=config.length_penalty,
            coverage_penalty=config.coverage_penalty, n_best=1,
        )
        return {k: out[k][:, 0] for k in ("tokens", "lengths", "attention", "score")}

    def translate(self, text, beam_size: int):
        """The signature body: `[B]` strings -> the five outputs in the module docstring."""
        source_tokens, source_ids = self.tokenize(text)
        source_lengths = tf.reduce_sum(tf.cast(source_ids != 0, tf.int32), 1)
        out = self.decode(source_ids, beam_size)
        tokens, lengths = out["tokens"], out["lengths"]
        steps = tf.shape(tokens)[1]
        # One attention row per output token plus the end token's, where it was emitted.
        rows = tf.minimum(lengths + 1, steps)
        width = tf.reduce_max(tf.concat([rows, [0]], 0))
        target_ids = tokens[:, :width]
        attention = out["attention"][:, :width]
        # A model without attention has depth 0: give it the source's width, all zeros.
        depth_missing = tf.shape(source_ids)[1] - tf.shape(attention)[2]
        attention = tf.pad(attention, [[0, 0], [0, 0], [0, depth_missing]])
        words = tf.gather(self.target_strings, target_ids)
        if self.replace_unk:
            words = replace_unknown(
                words, target_ids, lengths, source_tokens, source_lengths, attention
            )
        translation = zoo_text.detokenize(
            tf.RaggedTensor.from_tensor(words, lengths=tf.minimum(lengths, width))
        )
        return {
            "translation": translation,
            "attention": attention,
            "source_tokens": source_tokens,
            "target_tokens": words,
            "score": out["score"],
        }


NMT_SIGNATURES = ("serving_default", "greedy")


def nmt_archive(translator, replace_unk=None) -> keras.export.ExportArchive:
    """A `keras.export.ExportArchive` with the nmt signatures, ready for `write_out`.

    Args:
        translator: a `recipes.translator.Translator` (model, vocabularies, config).
        replace_unk: overrides the run's `replace_unk` setting when not `None`.
    """
    graph = NmtGraph(
        translator.model,
        translator.source_vocab.tokens,
        translator.target_vocab.tokens,
        translator.config,
        replace_unk=replace_unk,
    )
    archive = keras.export.ExportArchive()
    archive.track(translator.model)
    archive.track(graph.source_table)
    spec = [tf.TensorSpec([None], tf.string, name="text")]
    beam_size = int(translator.config.beam_size)

    def serving_default(text):
        return graph.translate(text, beam_size)

    def greedy(text):
        return graph.translate(text, 1)

    archive.add_endpoint("serving_default", serving_default, input_signature=spec)
    archive.add_endpoint("greedy", greedy, input_signature=spec)
    return archive


def warmup_texts(source_tokens: list[str]) -> list[str]:
    """A few sentences of different lengths made of the source vocabulary's commonest words,
    plus an empty string: requests any nmt model accepts, for the warmup file and the tests."""
    words = [w for w in source_tokens[len(zoo_text.SPECIAL_TOKENS):] if w] or ["a"]
    pick = lambda n: " ".join(words[i % len(words)] for i in range(n))  # noqa: E731
    return [pick(1), pick(4), pick(12), ""]


def save_nmt(translator, folder: str, model_name: str = "nmt", replace_unk=None) -> None:
    """Writes the nmt SavedModel (with its warmup requests) into `folder`."""
    from export import warmup

    nmt_archive(translator, replace_unk=replace_unk).write_out(folder, verbose=False)
    texts = warmup_texts(translator.source_vocab.tokens)
    warmup.write_requests(
        folder,
        [
            warmup.predict_request(model_name, "serving_default", {"text": texts}),
            warmup.predict_request(model_name, "greedy", {"text": texts[:2]}),
        ],
    )
