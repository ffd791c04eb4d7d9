"""TFLite models for LiteRT: the conversion (builtin ops only) and the files every recipe writes.

Layout written under an exports root (default `exports/`):

    exports/tflite/
      <name>.tflite                  the model (float32), one signature: `serving_default`
      <name>.dynamic_range.tflite    with `quantize`: int8 weights, float activations
      <name>.json                    shapes, special ids, preprocessing: what an app needs
      ...                            the recipe's vocabularies (see `export/<recipe>.py`)

Each recipe's TFLite model is its greedy search in one graph, with fixed shapes (one example a
call: `fixed_outputs`), converted with TFLite builtin ops only (no Flex delegate, no custom ops),
so the standalone `ai_edge_litert.interpreter.Interpreter` runs it. Every file is written to a
temporary name and renamed, so an app never reads half a file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile

import keras
import tensorflow as tf

from zoo import text as zoo_text

TFLITE_DIR = "tflite"
# The ids every recipe's vocabulary reserves, for the metadata an app reads.
SPECIAL_IDS = {"pad": zoo_text.PAD_ID, "unk": zoo_text.UNK_ID,
               "start": zoo_text.START_ID, "end": zoo_text.END_ID}


def convert(archive: keras.export.ExportArchive, quantize: bool = False) -> bytes:
    """Converts an archive's `serving_default` to a TFLite flatbuffer, builtin ops only.

    `quantize=True` gives dynamic-range quantisation (int8 weights, float activations).
    """
    with tempfile.TemporaryDirectory(prefix="zoo-tflite-") as tmp:
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serving_default"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return converter.convert()


def write_bytes(path: str, data: bytes) -> None:
    """Writes `data` to `path` through a temporary name in the same folder, then renames it."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def vocabulary_file(tokens: list[str]) -> bytes:
    """A vocabulary file's bytes: one token per line, line number = id (line 0 is padding "")."""
    return ("\n".join(tokens) + "\n").encode("utf-8")


def fixed_outputs(out, out_length: int, attention_shape) -> dict:
    """One example's search outputs (`export.graph.search` on a batch of 1) in the fixed shapes
    of a TFLite signature, padded with 0 after the last step:

    - `tokens`: int32 `[1, out_length]`, the output ids, then the end id where emitted, then 0.
    - `length`: int32 `[1]`, the number of output tokens before the end token.
    - `attention`: float32 `[1, out_length, *attention_shape]` (the search's attention
      `[1, T, S]`, `S` padded up to the product of `attention_shape`, then reshaped).
    - `score`: float32 `[1]`.
    """
    missing = out_length - tf.shape(out["tokens"])[1]
    attention = out["attention"]
    depth_missing = math.prod(attention_shape) - tf.shape(attention)[2]
    attention = tf.pad(attention, [[0, 0], [0, missing], [0, depth_missing]])
    return {
        "tokens": tf.reshape(tf.pad(out["tokens"], [[0, 0], [0, missing]]), [1, out_length]),
        "length": tf.reshape(out["lengths"], [1]),
        "attention": tf.reshape(attention, [1, out_length, *attention_shape]),
        "score": tf.reshape(out["score"], [1]),
    }


def outputs_metadata(out_length: int, attention_shape) -> dict:
    """`fixed_outputs`' names, dtypes and shapes, as the metadata file lists them."""
    return {
        "tokens": ["int32", [1, out_length]],
        "length": ["int32", [1]],
        "attention": ["float32", [1, out_length, *attention_shape]],
        "score": ["float32", [1]],
    }


def write(archive: keras.export.ExportArchive, exports_root: str, name: str, quantize: bool,
          files: dict, meta: dict) -> list[str]:
    """Writes a recipe's TFLite files into `exports_root/tflite/`: `<name>.tflite` converted
    from `archive` (and `<name>.dynamic_range.tflite` with `quantize`), then `files` (file name
    -> bytes: vocabularies, tokenizers) and `meta` as `<name>.json`. Returns the paths written,
    in that order."""
    folder = os.path.join(exports_root, TFLITE_DIR)
    os.makedirs(folder, exist_ok=True)
    models = {f"{name}.tflite": False, **({f"{name}.dynamic_range.tflite": True} if quantize else {})}
    contents = {filename: convert(archive, quantize=q) for filename, q in models.items()}
    contents.update(files)
    contents[f"{name}.json"] = (json.dumps(meta, indent=2) + "\n").encode("utf-8")
    paths = []
    for filename, data in contents.items():
        paths.append(os.path.join(folder, filename))
        write_bytes(paths[-1], data)
    return paths
