"""Interleaved A/B timing and the machine description every result carries."""

import datetime
import os
import platform
import statistics
import time


def interleaved(fns, repeats, warmup=1, inner=1):
    """Times each callable in `fns` (a dict) in turn, ABAB..., `repeats` rounds after `warmup`.

    Returns `{name: median seconds per call}`; each sample is the mean over `inner` calls.
    Interleaving spreads the load of a shared machine over A and B alike, and every other round
    runs them in reverse order, so that none always runs first (warm caches, clock ramps).
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples = {name: [] for name in fns}
    order = list(fns.items())
    for round_ in range(repeats):
        for name, fn in order if round_ % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            samples[name].append((time.perf_counter() - t0) / inner)
    return {name: statistics.median(s) for name, s in samples.items()}


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine():
    import keras
    import tensorflow as tf

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu": [d.name for d in tf.config.list_physical_devices("GPU")] or None,
    }
