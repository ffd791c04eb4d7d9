"""Item 3: the exported nmt SavedModel (greedy, beam 4) and the TFLite model in LiteRT."""

import glob
import os

import tensorflow as tf

from bench.timing import interleaved


def latest_version(exports_root):
    versions = sorted(glob.glob(os.path.join(exports_root, "nmt", "[0-9]*")), key=lambda p: int(os.path.basename(p)))
    return versions[-1]


def run(exports_root, sentences, batch=64, repeats=7, latency_repeats=30):
    from export.nmt import TFLiteTranslator

    loaded = tf.saved_model.load(latest_version(exports_root))
    greedy, beam = loaded.signatures["greedy"], loaded.signatures["serving_default"]
    lite = TFLiteTranslator(os.path.join(exports_root, "tflite", "nmt.tflite"))
    texts = tf.constant((sentences * (batch // len(sentences) + 1))[:batch])
    one = [tf.constant(sentences[i : i + 1]) for i in range(len(sentences))]
    cursor = {"sm": 0, "beam": 0, "lite": 0}

    def single(name, fn):
        def call():
            i = cursor[name] % len(sentences)
            cursor[name] += 1
            return fn(i)
        return call

    batched = interleaved(
        {"greedy": lambda: greedy(text=texts)["translation"].numpy(),
         "beam4": lambda: beam(text=texts)["translation"].numpy()},
        repeats=repeats, warmup=1,
    )
    # Batch 1: the same sentences, cycled, for each of the three.
    latency = interleaved(
        {
            "saved_model_greedy": single("sm", lambda i: greedy(text=one[i])["translation"].numpy()),
            "saved_model_beam4": single("beam", lambda i: beam(text=one[i])["translation"].numpy()),
            "tflite_greedy": single("lite", lambda i: lite.translate(sentences[i])),
        },
        repeats=latency_repeats, warmup=3,
    )
    result = {
        "batch": batch,
        "saved_model_greedy_sentences_per_s": batch / batched["greedy"],
        "saved_model_beam4_sentences_per_s": batch / batched["beam4"],
        "latency_ms": {k: v * 1e3 for k, v in latency.items()},
        "tflite_over_saved_model_greedy": latency["tflite_greedy"] / latency["saved_model_greedy"],
    }
    print(f"  batch {batch}: greedy {result['saved_model_greedy_sentences_per_s']:.1f} sent/s, "
          f"beam 4 {result['saved_model_beam4_sentences_per_s']:.1f} sent/s")
    print("  batch 1: " + ", ".join(f"{k} {v:.1f} ms" for k, v in result["latency_ms"].items())
          + f"; TFLite/SavedModel {result['tflite_over_saved_model_greedy']:.2f}")
    return result
