"""A real-text training step by compute precision and compilation, side by side in one process.

    python -m bench.step_precision [--vocab 8000] [--calls 10]    (from the repository root)

Times `train_on_batch` of the real-text configuration's model (configs/nmt-real-text.json) on a
batch of 85 sentences of 36 source and 39 target tokens (the configuration's average batch, as
`bench.output_layer`), four ways: float32, Keras' `mixed_bfloat16` policy (bfloat16 compute,
float32 weights; fast only where the CPU has bfloat16 instructions, e.g. AVX512_BF16 or AMX),
and each with XLA (`jit_compile=True`). The four models are timed in turn, one call each per
round (interleaved, so a noisy machine slows them alike), after 3 warm-up calls; the figures are
medians. Writes `bench/results-step-precision.json` and prints a table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from recipes import nmt
from recipes.config import from_words, write_json

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results-step-precision.json")
VARIANTS = (("float32", False), ("mixed_bfloat16", False), ("float32", True),
            ("mixed_bfloat16", True))


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next(line for line in f if line.startswith("flags")).split(":")[1].split()
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags if "bf16" in f or f.startswith("amx"))


def _model(policy: str, jit: bool, vocab: int):
    keras.mixed_precision.set_global_policy(policy)
    try:
        config = from_words(nmt.NmtConfig, ["config=configs/nmt-real-text.json",
                                            "data=tests/data/bible-en-fr", f"jit_compile={jit}"])
        keras.utils.set_random_seed(0)
        model = nmt.build_model(config, vocab, vocab)
        nmt.compile_model(model, config, 100)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return model


def run(vocab: int = 8000, calls: int = 10, out: str = OUT) -> dict:
    """Times the four variants (see the module docstring); writes and returns the result."""
    rng = np.random.default_rng(0)
    B, S, T, V = 85, 36, 39, vocab
    x = {"source": rng.integers(4, V, (B, S)).astype("int32"),
         "target_in": rng.integers(4, V, (B, T)).astype("int32")}
    y = rng.integers(4, V, (B, T)).astype("int32")
    models = {f"{p}{' + XLA' if jit else ''}": _model(p, jit, V) for p, jit in VARIANTS}
    losses = {name: [] for name in models}
    times = {name: [] for name in models}
    for name, model in models.items():
        for _ in range(3):
            losses[name].append(float(model.train_on_batch(x, y)[0]))
    for _ in range(calls):
        for name, model in models.items():
            t0 = time.perf_counter()
            losses[name].append(float(model.train_on_batch(x, y)[0]))
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["float32"])
    rows = []
    for name in models:
        median = statistics.median(times[name])
        rows.append({"variant": name, "step_ms": round(1000 * median, 1),
                     "speed_vs_float32": round(base / median, 2),
                     "target_tokens_per_s": round(B * T / median),
                     "loss_first": round(losses[name][0], 4), "loss_last": round(losses[name][-1], 4),
                     "finite": all(np.isfinite(losses[name]))})
    result = {
        "command": "python -m bench.step_precision" + (f" --vocab {V}" if V != 8000 else ""),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "bf16_flags": _cpu_flags(), "tensorflow": tf.__version__,
                    "keras": keras.__version__},
        "batch": {"sentences": B, "source_tokens": S, "target_tokens": T, "vocabulary": V},
        "calls": calls,
        "rows": rows,
    }
    write_json(out, result)
    print("| variant | step ms | vs float32 | target tokens/s | loss first -> last |")
    print("|---|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['step_ms']} | {r['speed_vs_float32']}x | "
              f"{r['target_tokens_per_s']} | {r['loss_first']} -> {r['loss_last']} |")
    print(f"wrote {out}")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", type=int, default=8000, help="target and source vocabulary")
    parser.add_argument("--calls", type=int, default=10, help="timed calls of each model")
    args = parser.parse_args(argv)
    run(args.vocab, args.calls)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
