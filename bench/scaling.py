"""Item 4: decode time against source length and against beam size, with fitted slopes.

The decoder runs a fixed number of steps (END never stops it), so only the source length or the
beam changes between points; source ids are random in-vocabulary ids.
"""

import numpy as np
import tensorflow as tf

from bench.timing import interleaved
from zoo import decoding, text


def decoder(model, beam, steps):
    @tf.function(input_signature=[tf.TensorSpec((None, None), tf.int32)])
    def run(source):
        step_fn, state, constants = model.decoding_inputs(source)
        start = tf.fill(tf.shape(source)[:1], text.START_ID)
        if beam == 1:  # end_id -1: never emitted, so every sentence runs `steps` steps
            return decoding.greedy_search(step_fn, state, constants, start, -1, steps)["tokens"]
        return decoding.beam_search(step_fn, state, constants, start, -1, steps,
                                    beam_size=beam)["tokens"]
    return run


def fit(x, y):
    """(log-log exponent, linear slope) of y against x."""
    exponent = np.polyfit(np.log(x), np.log(y), 1)[0]
    slope = np.polyfit(x, y, 1)[0]
    return float(exponent), float(slope)


def run(model, source_vocab_size, lengths=(10, 25, 50, 100, 200), beams=(1, 2, 4, 8),
        steps=40, batch=1, beam_length=50, repeats=5):
    rng = np.random.default_rng(0)

    def source(length):
        return tf.constant(rng.integers(4, source_vocab_size, size=(batch, length)), tf.int32)

    greedy = decoder(model, 1, steps)
    by_length = interleaved(
        # The default argument binds each length's source (B008 is the point here).
        {n: (lambda s=source(n): greedy(s).numpy()) for n in lengths},  # noqa: B008
        repeats=repeats, warmup=1,
    )
    s = source(beam_length)
    runs = {b: decoder(model, b, steps) for b in beams}
    by_beam = interleaved({b: (lambda r=runs[b]: r(s).numpy()) for b in beams}, repeats=repeats, warmup=1)
    ms_len = [by_length[n] * 1e3 for n in lengths]
    ms_beam = [by_beam[b] * 1e3 for b in beams]
    exp_len, slope_len = fit(lengths, ms_len)
    exp_beam, slope_beam = fit(beams, ms_beam)
    result = {
        "decode_steps": steps,
        "batch": batch,
        "source_lengths": list(lengths),
        "ms_by_source_length": ms_len,
        "source_length_exponent": exp_len,
        "ms_per_source_token": slope_len,
        "beam_source_length": beam_length,
        "beams": list(beams),
        "ms_by_beam": ms_beam,
        "beam_exponent": exp_beam,
        "ms_per_beam": slope_beam,
    }
    print(f"  source length {lengths}: {[round(x, 1) for x in ms_len]} ms; exponent {exp_len:.2f}, "
          f"{slope_len:.3f} ms/token")
    print(f"  beam {beams}: {[round(x, 1) for x in ms_beam]} ms; exponent {exp_beam:.2f}, "
          f"{slope_beam:.2f} ms/beam")
    return result


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.loglog(result["source_lengths"], result["ms_by_source_length"], "o-")
    a.set_xlabel("source tokens")
    a.set_ylabel(f"ms per decode ({result['decode_steps']} steps, greedy)")
    a.set_title(f"exponent {result['source_length_exponent']:.2f}, "
                f"{result['ms_per_source_token']:.3f} ms/token")
    b.loglog(result["beams"], result["ms_by_beam"], "o-")
    b.set_xlabel("beam size")
    b.set_ylabel(f"ms per decode ({result['beam_source_length']} source tokens)")
    b.set_title(f"exponent {result['beam_exponent']:.2f}, {result['ms_per_beam']:.2f} ms/beam")
    for ax in (a, b):
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
