"""The captioning export: SavedModel (pixels and encoded files in) loaded in a clean process and
compared with `Captioner`; the TFLite model compared with the SavedModel's `greedy` signature."""

import os

import numpy as np
import pytest

from tests import image_files
from tests.conftest import TINY_CAPTIONING

pytestmark = pytest.mark.slow

OUTPUTS = {"caption": "string", "attention": "float32", "tokens": "string", "score": "float32"}


def test_export_module_hooks():
    from export import EXPORTERS, captioning

    assert "captioning" in EXPORTERS and captioning.NAME == "captioning"
    assert captioning.OPTIONS == ()
    assert all(callable(getattr(captioning, hook)) for hook in
               ("run_files", "load", "save_saved_model", "write_tflite"))
    assert captioning.run_files({}) == ("vocab.txt",)


def test_layout(captioning_export):
    version = captioning_export["saved_model"]
    assert version == os.path.join(captioning_export["root"], "captioning", "1")
    assert os.path.exists(os.path.join(version, "assets.extra", "tf_serving_warmup_requests"))
    assert 'name: "captioning"' in open(captioning_export["models_config"]).read()
    names = sorted(os.path.basename(p) for p in captioning_export["tflite"])
    assert names == ["captioning.json", "captioning.tflite", "captioning.vocab.txt"]


def test_clean_process_and_signatures(caption_outputs):
    assert caption_outputs["reachable"] == [] and caption_outputs["project_modules"] == []
    assert caption_outputs["unknown_ops"] == []
    specs = caption_outputs["specs"]
    assert sorted(specs) == ["greedy", "serving_bytes", "serving_default"]
    assert specs["serving_default"]["inputs"] == {"image": ["uint8", [None, None, None, 3]]}
    assert specs["greedy"]["inputs"] == specs["serving_default"]["inputs"]
    assert specs["serving_bytes"]["inputs"] == {"image_bytes": ["string", [None]]}
    for spec in specs.values():
        assert {k: v[0] for k, v in spec["outputs"].items()} == OUTPUTS
        assert len(spec["outputs"]["attention"][1]) == 4  # [B, T, h, w]


def _compare(out, results):
    assert len(out["caption"]) == len(results)
    for i, result in enumerate(results):
        n = len(result.tokens)
        rows = result.attention.shape[0]
        assert list(out["tokens"][i, :n]) == result.tokens
        assert list(out["tokens"][i, n:rows]) == ["[END]"] * (rows - n)
        assert set(out["tokens"][i, rows:]) <= {""}
        assert out["caption"][i] == result.text
        np.testing.assert_allclose(out["score"][i], result.score, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out["attention"][i, :rows], result.attention, atol=1e-5)
        assert not out["attention"][i, rows:].any()


@pytest.mark.parametrize("key,beam", [("serving_default/images", None), ("greedy/images", 1)])
def test_matches_the_captioner(caption_outputs, captioner, caption_inputs, key, beam):
    images = caption_inputs["images"]
    results = captioner.caption(images, beam=beam, batch_size=len(images))
    assert results[0].attention.shape[1:] == tuple(captioner.grid_shape)
    _compare(caption_outputs["outputs"][key], results)


def test_other_sizes_and_encoded_files_as_the_captioner(caption_outputs, captioner, caption_inputs):
    other = caption_inputs["other_size"]
    _compare(caption_outputs["outputs"]["serving_default/other_size"],
             captioner.caption(other, batch_size=len(other)))
    files = caption_inputs["files"]
    _compare(caption_outputs["outputs"]["serving_bytes/files"],
             captioner.caption(files, batch_size=len(files)))


def test_images_without_pixels_are_captioned_as_black(caption_outputs):
    outputs = caption_outputs["outputs"]
    black = outputs["serving_default/black"]["caption"][0]
    assert list(outputs["serving_default/no_pixels"]["caption"]) == [black, black]


# -- serving_bytes: every file judged by its header before it is decoded ---------------------


@pytest.fixture(scope="module")
def served(captioning_export):
    """The exported SavedModel loaded in this process, as TF Serving's session runs it."""
    import tensorflow as tf

    return tf.saved_model.load(captioning_export["saved_model"])


def _serve_bytes(served, files):
    import tensorflow as tf

    out = served.signatures["serving_bytes"](image_bytes=tf.constant(files, tf.string))
    return {k: v.numpy() for k, v in out.items()}


# Small files whose header declares 6000 x 5000 = 30 million pixels (the limit is 25 million).
BOMBS = {
    "png": lambda: image_files.png_bomb(6000, 5000),  # valid: 29 kB that decode to 90 MB
    "jpeg": lambda: image_files.jpeg_declaring(6000, 5000),
    "gif": lambda: image_files.gif_declaring(6000, 5000),
    "bmp": lambda: image_files.bmp_declaring(6000, 5000),
}


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_serving_bytes_refuses_more_pixels_than_the_limit(served, caption_inputs, kind):
    import tensorflow as tf

    from zoo.images import MAX_IMAGE_PIXELS

    assert MAX_IMAGE_PIXELS == 25_000_000  # the documented limit the message names
    good = caption_inputs["files"][0]
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image_bytes\[1\] is 6000x5000 = 30000000 pixels, more than the "
                             r"limit of 25000000 \(MAX_IMAGE_PIXELS\); downscale it first"):
        _serve_bytes(served, [good, BOMBS[kind]()])
    # The model goes on serving.
    assert len(_serve_bytes(served, [good])["caption"]) == 1


def test_serving_bytes_refuses_gifs_whose_frames_exceed_the_limit(served, caption_inputs):
    import tensorflow as tf

    # A 2000 x 2000 screen passes, but its 7 frames hold 28 million pixels, all decoded.
    bomb = image_files.gif_frames(7, 2000)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image_bytes\[1\] is a GIF whose frames hold more than 25000000 "
                             r"pixels in all \(MAX_IMAGE_PIXELS\)"):
        _serve_bytes(served, [caption_inputs["files"][0], bomb])
    # Three such frames are within the limit.
    assert len(_serve_bytes(served, [image_files.gif_frames(3, 2000)])["caption"]) == 1


def test_serving_bytes_refuses_more_bytes_than_the_limit(served):
    import tensorflow as tf

    from zoo.images import MAX_IMAGE_BYTES

    huge = image_files.png_bomb(40, 30) + bytes(MAX_IMAGE_BYTES)  # a PNG, then padding
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=rf"image_bytes\[0\] is {len(huge)} bytes, more than the limit of "
                             rf"{MAX_IMAGE_BYTES} \(MAX_IMAGE_BYTES\)"):
        _serve_bytes(served, [huge])


@pytest.mark.parametrize("kind", sorted(image_files.not_images()))
def test_serving_bytes_refuses_what_is_not_an_image_naming_it(served, caption_inputs, kind):
    # WebP, TIFF, text, noise and empty strings were captioned as a black image: a wrong answer
    # without an error. Now the request fails, naming the image by its index in the batch.
    import tensorflow as tf

    files = [caption_inputs["files"][0], caption_inputs["files"][1],
             image_files.not_images()[kind]]
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image_bytes\[2\] is not a JPEG, PNG, GIF or BMP file"):
        _serve_bytes(served, files)


def test_serving_bytes_reads_gif_and_bmp_as_the_captioner(served, captioner):
    files = [image_files.pil_file("GIF", (50, 40), seed=2),
             image_files.pil_file("BMP", (50, 40), seed=3),
             image_files.pil_file("BMP", (32, 32), seed=4)]
    out = _serve_bytes(served, files)
    results = captioner.caption(files, batch_size=len(files))
    assert [c.decode() for c in out["caption"]] == [r.text for r in results]
    np.testing.assert_allclose(out["score"], [r.score for r in results], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("signature", ["serving_default", "serving_bytes", "greedy"])
def test_empty_batch_gives_empty_outputs(caption_outputs, captioner, signature):
    # Run with oneDNN forced on and off (the fixture compares the two): an empty batch once
    # crashed the batch-normalised CNN with oneDNN on.
    assert caption_outputs["onednn"] == ["1", "0"]
    out = caption_outputs["outputs"][f"{signature}/empty_batch"]
    assert set(out) == set(OUTPUTS)
    h, w = captioner.grid_shape
    assert out["caption"].shape == (0,) and out["score"].shape == (0,)
    assert out["tokens"].shape[0] == 0 and out["tokens"].ndim == 2
    assert out["attention"].shape[0] == 0 and out["attention"].shape[2:] == (h, w)


def test_warmup_requests_match_the_signatures(captioning_export, caption_outputs):
    from export.warmup import read_requests

    specs = caption_outputs["specs"]
    requests = read_requests(captioning_export["saved_model"])
    assert {r.model_spec.signature_name for r in requests} == set(specs)
    for request in requests:
        assert request.model_spec.name == "captioning"
        assert set(request.inputs) == set(specs[request.model_spec.signature_name]["inputs"])


def test_tflite_matches_the_greedy_signature(captioning_export, caption_outputs, caption_inputs,
                                             captioner):
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.tools import flatbuffer_utils

    path = os.path.join(captioning_export["root"], "tflite", "captioning.tflite")
    codes = flatbuffer_utils.read_model(path).operatorCodes
    assert all(max(c.builtinCode, c.deprecatedBuiltinCode) != 32 and not c.customCode
               for c in codes)
    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    tokens = captioner.vocab.tokens
    for i, image in enumerate(caption_inputs["images"]):
        expected = {k: v[0] for k, v in caption_outputs["outputs"][f"greedy/one/{i}"].items()}
        out = runner(image=image[None])
        n = int(out["length"][0])
        ids = out["tokens"][0]
        rows = n + 1 if n < len(ids) and ids[n] == 3 else n
        assert [tokens[t] for t in ids[:rows]] == [t for t in expected["tokens"] if t]
        assert not ids[rows:].any()
        assert out["attention"].shape == (1, TINY_CAPTIONING["max_caption_length"] + 1,
                                          *captioner.grid_shape)
        np.testing.assert_allclose(out["attention"][0, :rows], expected["attention"][:rows],
                                   atol=1e-5)
        np.testing.assert_allclose(out["score"][0], expected["score"], rtol=1e-5, atol=1e-4)
