"""The exported SavedModels under concurrent load, in the real TF runtime (loaded with
`tf.saved_model.load`, as TF Serving's session runs it): 8 threads send 2,000 requests; every
answer equals the sequential answer to the same request, and memory stops growing after
warm-up.

- nmt: requests of 1-4 sentences (mixed lengths, empty strings, invalid UTF-8);
- captioning: one image a request, as pixels of several sizes (`serving_default`, `greedy`) or
  as an encoded file (`serving_bytes`), and refused files (not an image, too many pixels) that
  must fail with the same error every time."""

import threading
import time

import numpy as np
import pytest

from tests.export.conftest import LONG_TEXT, TEXTS

THREADS = 8
REQUESTS = 2000
DISTINCT = 120  # distinct requests, each answered once sequentially, then sampled with repeats
BEAM_EVERY = 10  # one request in 10 goes to serving_default (beam search), the rest to greedy
# RSS may grow by at most this much between request 1,000 and request 2,000 (after warm-up):
# allocator noise, not a leak (a leak of one request's tensors, ~10 kB each, would be ~10 MB+).
RSS_MARGIN_MB = 24

WORDS = ["one", "two", "three", "seven", "twenty", "forty-two", "hundred", "thousand", "and",
         "million", "nine", "zzzz", ",", "Eighty-Eight!", "quux"]
ODD = ["", "   ", b"\xff\xfe", b"\xff\xfe seven \xc3", b"\xc3\x28 two", "\x00 one \x00",
       "\t\n", LONG_TEXT + " " + LONG_TEXT]


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _requests(rng):
    """DISTINCT (signature, texts) requests: 1-4 sentences of 0-40 words, one in four odd."""
    out = []
    for i in range(DISTINCT):
        texts = []
        for _ in range(rng.integers(1, 5)):
            if rng.random() < 0.25:
                text = ODD[rng.integers(len(ODD))]
            else:
                n = int(rng.choice([1, 2, 3, 5, 8, 13, 40]))
                text = " ".join(rng.choice(WORDS, n))
            texts.append(text if isinstance(text, bytes) else text.encode("utf-8"))
        out.append(("serving_default" if i % BEAM_EVERY == 0 else "greedy", texts))
    # The export tests' own odd sentences, as a batch and one by one.
    out.append(("greedy", [t if isinstance(t, bytes) else t.encode() for t in TEXTS]))
    return out


def _call(model, signature, texts):
    import tensorflow as tf

    out = model.signatures[signature](text=tf.constant(texts, tf.string))
    return {k: v.numpy() for k, v in out.items()}


def _same(got, want):
    for key in ("translation", "source_tokens", "target_tokens"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    for key in ("attention", "score"):
        assert got[key].shape == want[key].shape, key
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6, err_msg=key)


def _under_load(rng, requests, call, same):
    """Sends REQUESTS requests, drawn with repeats from `requests` (each at least once), from
    THREADS threads; checks each answer with `same(call(request), expected)` against the
    sequential answers. Returns (sequential requests/s, seconds, RSS MB before, {requests
    done: RSS MB})."""
    start = time.perf_counter()
    expected = [call(r) for r in requests]  # also the warm-up: every shape traced and run
    sequential = len(requests) / (time.perf_counter() - start)

    order = rng.integers(len(requests), size=REQUESTS)
    order[: len(requests)] = np.arange(len(requests))  # every distinct request at least once
    rng.shuffle(order)
    lock = threading.Lock()
    state = {"next": 0, "done": 0, "rss": {}}
    errors = []

    def worker():
        while True:
            with lock:
                if state["next"] >= REQUESTS or errors:
                    return
                i = state["next"]
                state["next"] += 1
            try:
                same(call(requests[order[i]]), expected[order[i]])
            except Exception as e:  # noqa: BLE001 - reported below with the request
                with lock:
                    errors.append(f"request {i} (#{order[i]}: {requests[order[i]]!r:.200}): "
                                  f"{type(e).__name__}: {e}")
                return
            with lock:
                state["done"] += 1
                if state["done"] in (1, 500, 1000, 1500, REQUESTS):
                    state["rss"][state["done"]] = _rss_mb()

    rss_start = _rss_mb()
    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    assert not errors, errors[:3]
    assert state["done"] == REQUESTS
    return expected, sequential, seconds, rss_start, state["rss"]


def _report(what, sequential, seconds, rss_start, rss):
    print(f"\n{what} serving load: {REQUESTS} requests, {THREADS} threads, {seconds:.1f} s, "
          f"{REQUESTS / seconds:.0f} requests/s (sequential {sequential:.0f}/s); RSS MB before "
          f"{rss_start:.0f}, " + ", ".join(f"after {k}: {v:.0f}" for k, v in sorted(rss.items())))


@pytest.mark.slow
def test_concurrent_requests_match_sequential_and_memory_is_stable(loaded_saved_model):
    model = loaded_saved_model
    rng = np.random.default_rng(8)
    requests = _requests(rng)
    expected, *figures = _under_load(rng, requests, lambda r: _call(model, *r), _same)
    assert all(len(e["translation"]) == len(r[1]) for e, r in zip(expected, requests, strict=True))
    _report("nmt", *figures)
    rss = figures[-1]
    assert rss[REQUESTS] - rss[1000] < RSS_MARGIN_MB, rss


# -- captioning ------------------------------------------------------------------------------

CAPTION_DISTINCT = 60


@pytest.fixture(scope="module")
def loaded_captioning_model(captioning_export):
    import tensorflow as tf

    return tf.saved_model.load(captioning_export["saved_model"])


def _caption_requests(rng, test_images):
    """CAPTION_DISTINCT (signature, input name, value) requests of one image each: test scenes
    and noise at the model's size and others, a black image, PNG and JPEG files; and, one in
    twelve, a file `serving_bytes` must refuse."""
    import tensorflow as tf

    from tests import image_files

    size = test_images.shape[1]
    refused = [image_files.pil_file("WEBP", seed=5), b"not an image",
               image_files.png_bomb(6000, 5000)]
    out = []
    for i in range(CAPTION_DISTINCT):
        if i % 12 == 11:
            out.append(("serving_bytes", "image_bytes", [refused[(i // 12) % len(refused)]]))
            continue
        kind = rng.integers(4)
        if kind == 0:
            image = test_images[rng.integers(len(test_images))]
        elif kind == 1:
            h, w = rng.choice([size, size // 2, size * 2, 45], 2)
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        elif kind == 2:
            image = np.zeros((size, size, 3), np.uint8)
        else:
            image = test_images[rng.integers(len(test_images))][:, ::-1]
        if i % 5 == 0:
            encode = tf.io.encode_png if i % 10 == 0 else tf.io.encode_jpeg
            out.append(("serving_bytes", "image_bytes", [encode(np.ascontiguousarray(image)).numpy()]))
        else:
            out.append(("serving_default" if i % 5 == 1 else "greedy", "image",
                        np.ascontiguousarray(image)[None]))
    return out


def _caption_call(model, signature, name, value):
    import tensorflow as tf

    try:
        out = model.signatures[signature](**{name: tf.constant(value)})
    except tf.errors.InvalidArgumentError as e:
        return {"error": e.message.split("assertion failed: ")[-1].splitlines()[0]}
    return {k: v.numpy() for k, v in out.items()}


def _caption_same(got, want):
    assert got.keys() == want.keys(), (sorted(got), sorted(want))
    if "error" in want:
        assert got["error"] == want["error"]
        return
    for key in ("caption", "tokens"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    for key in ("attention", "score"):
        assert got[key].shape == want[key].shape, key
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.slow
def test_concurrent_caption_requests_match_sequential_and_memory_is_stable(
        loaded_captioning_model, caption_inputs):
    model = loaded_captioning_model
    rng = np.random.default_rng(9)
    requests = _caption_requests(rng, caption_inputs["images"])
    expected, *figures = _under_load(rng, requests, lambda r: _caption_call(model, *r),
                                     _caption_same)
    errors_expected = [e for e in expected if "error" in e]
    assert len(errors_expected) == CAPTION_DISTINCT // 12
    assert all("image_bytes[0] is" in e["error"] for e in errors_expected), errors_expected
    assert all(len(e["caption"]) == 1 for e in expected if "error" not in e)
    _report("captioning", *figures)
    # From the end of the first quarter to the end: allocator noise only, no growth per request.
    rss = figures[-1]
    assert rss[REQUESTS] - rss[REQUESTS // 4] < RSS_MARGIN_MB, rss
