"""The captioning recipe: data, a train step, decoding consistency, evaluation, resume, COCO data."""

import dataclasses
import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from recipes import captioning, training
from recipes.config import ConfigError, apply_overrides, from_words, to_dict
from tests import image_files
from tests.conftest import TINY_CAPTIONING
from zoo import decoding, text
from zoo.data import digit_scenes
from zoo.errors import DataError
from zoo.layers import ATTENTION_TYPES
from zoo.losses import masked_loss

TINY = dict(
    train_size=96,
    validation_size=16,
    test_size=16,
    image_size=32,
    encoder_filters=(4, 8, 8),
    feature_dim=16,
    embedding_dim=8,
    units=16,
    batch_size=32,
    epochs=1,
    beam_size=2,
)


def tiny_config(**changes):
    return apply_overrides(captioning.CaptioningConfig(), {**TINY, **changes})


@pytest.fixture(scope="module")
def captioner(tiny_captioning_run):
    return captioning.Captioner.from_run(tiny_captioning_run)


# -- data and model --------------------------------------------------------------------------


def test_data_batches_are_bucketed_and_reproducible():
    config = tiny_config(train_size=200)
    data = captioning.build_data(config)
    assert data.train.images.shape == (200, 32, 32, 3) and data.train.images.dtype == np.uint8
    assert data.vocab.tokens[:4] == list(text.SPECIAL_TOKENS)
    assert set(data.vocab.tokens[4:]) <= set(digit_scenes.VOCABULARY)
    examples = captioning.encode_examples(data.train, data.vocab)
    assert all(t[0] == text.START_ID and t[-1] == text.END_ID for t in examples[1])
    first = list(captioning.batches(data.train.images, *examples, 32, seed=0, epoch=0))
    again = list(captioning.batches(data.train.images, *examples, 32, seed=0, epoch=0))
    assert len(first) == captioning.steps_for(examples, config)
    assert sum(len(y) for _, y in first) == 200
    for (x, y), (x2, _) in zip(first, again, strict=True):
        np.testing.assert_array_equal(x["target_in"], x2["target_in"])
        assert x["image"].shape[0] == y.shape[0] and (y[:, -1] != 0).any()  # no wasted column
        np.testing.assert_array_equal(x["target_in"][:, 1:], y[:, :-1])


def test_fresh_training_scenes_every_epoch_are_reproducible():
    config = tiny_config(train_size=40)
    data = captioning.build_data(config)
    examples = captioning.encode_examples(data.train, data.vocab)
    first = captioning.epoch_examples(data.train, examples, config, data.vocab, 0)
    assert first[0] is data.train.images  # the first epoch trains on the split itself
    second = captioning.epoch_examples(data.train, examples, config, data.vocab, 1)
    again = captioning.epoch_examples(data.train, examples, config, data.vocab, 1)
    third = captioning.epoch_examples(data.train, examples, config, data.vocab, 2)
    assert second[0].shape == data.train.images.shape and len(second[1][1]) == 40
    np.testing.assert_array_equal(second[0], again[0])  # a resumed run sees the same scenes
    assert (second[0] != data.train.images).any() and (third[0] != second[0]).any()
    assert [list(t) for t in second[1][1]] != [list(t) for t in examples[1]]
    assert all(t[0] == text.START_ID and t[-1] == text.END_ID for t in second[1][1])
    # No new scenes when switched off, for COCO data (no scenes) or without the vocabulary.
    fixed = tiny_config(train_size=40, fresh_scenes=False)
    assert captioning.epoch_examples(data.train, examples, fixed, data.vocab, 3)[0] is (
        data.train.images)
    assert captioning.epoch_examples(data.train, examples, config, None, 3)[0] is (
        data.train.images)


def test_attention_peak_of_a_border_cell_is_inside_that_cell():
    from zoo import caption_metrics

    for row, col in [(0, 0), (0, 3), (2, 0), (5, 5)]:
        grid = np.full((6, 6), 0.01)
        grid[row, col] = 0.5
        x, y = caption_metrics.attention_peak(grid, 48, 48)
        # The cell's centre (3.5 pixels into it), not the image's edge for a top or left cell.
        assert abs(x - (8 * col + 3.5)) == abs(y - (8 * row + 3.5)) == 0.5
        upsampled = caption_metrics.upsample(grid, 48, 48)
        assert upsampled[y, x] == pytest.approx(upsampled.max())


def test_train_steps_lower_the_loss():
    config = tiny_config(train_size=32, learning_rate=0.01, doubly_stochastic=1.0)
    data = captioning.build_data(config)
    examples = captioning.encode_examples(data.train, data.vocab)
    x, y = next(captioning.batches(data.train.images, *examples, 32, seed=0, epoch=0))
    model = captioning.build_model(config, len(data.vocab))
    captioning.compile_model(model, config, steps_per_epoch=1000)

    def loss():
        cross_entropy = float(masked_loss(y, model(x, training=False)))
        return cross_entropy, cross_entropy + sum(float(v) for v in model.losses)

    first = loss()
    for _ in range(40):
        model.train_on_batch(x, y)
    last = loss()
    # The loss is the cross-entropy plus the doubly stochastic regulariser.
    assert first[1] > first[0] and np.isfinite(first[1])
    assert last[1] < 0.8 * first[1] and last[0] < 0.8 * first[0]


# -- a trained run ---------------------------------------------------------------------------


def test_caption_paths_arrays_and_bytes_agree(captioner, tmp_path):
    scenes = digit_scenes.make_scenes("test", 3, image_size=32)
    paths, encoded = [], []
    for n, scene in enumerate(scenes):
        encoded.append(tf.io.encode_png(scene.image).numpy())
        paths.append(tmp_path / f"{n}.png")
        paths[-1].write_bytes(encoded[-1])
    arrays = [s.image for s in scenes]
    from_arrays = captioner.caption(arrays, beam=1)
    for other in (captioner.caption([str(p) for p in paths], beam=1),
                  captioner.caption(encoded, beam=1),
                  captioner.caption(np.stack(arrays), beam=1)):
        assert [r.tokens for r in other] == [r.tokens for r in from_arrays]
    result = from_arrays[0]
    assert result.text == " ".join(result.tokens)
    h, w = captioner.grid_shape
    assert result.attention.shape[1:] == (h, w) == (4, 4)
    assert len(result.tokens) <= result.attention.shape[0] <= len(result.tokens) + 1
    # A bigger or grey image is resized; a single image need not be in a list.
    big = np.kron(arrays[0][..., 0], np.ones((2, 2), np.uint8))
    assert len(captioner.caption(big)) == 1
    with pytest.raises(DataError, match=r"image 0 has shape \(3, 3, 7\)"):
        captioner.caption([np.zeros((3, 3, 7), np.uint8)])
    with pytest.raises(DataError, match="not a JPEG, PNG"):
        captioner.caption([b"not an image"])
    with pytest.raises(DataError, match="does not exist"):
        captioner.caption([str(tmp_path / "missing.png")])


def test_beam_one_equals_greedy(captioner):
    images = digit_scenes.make_scenes("test", 6, image_size=32)
    pixels = np.stack([s.image for s in images])
    step_fn, state, constants = captioner.model.decoding_inputs(pixels)
    start = tf.fill([len(pixels)], text.START_ID)
    beam = decoding.beam_search(step_fn, state, constants, start, text.END_ID,
                                captioner.config.max_caption_length + 1, beam_size=1)
    greedy = captioner.caption(pixels, beam=1)
    for row, result in enumerate(greedy):
        n = int(beam["lengths"][row, 0])
        assert result.tokens == [captioner.vocab.tokens[i] for i in beam["tokens"][row, 0, :n]]
        assert result.score == pytest.approx(float(beam["score"][row, 0]), abs=1e-5)
        np.testing.assert_allclose(
            result.attention.reshape(len(result.attention), -1),
            beam["attention"][row, 0, : len(result.attention)], atol=1e-6,
        )


@pytest.mark.parametrize("beam", [1, 3])
def test_image_alone_equals_image_in_a_batch(captioner, beam):
    pixels = np.stack([s.image for s in digit_scenes.make_scenes("validation", 5, image_size=32)])
    together = captioner.caption(pixels, beam=beam)
    for image, joint in zip(pixels, together, strict=True):
        alone = captioner.caption([image], beam=beam)[0]
        assert alone.tokens == joint.tokens
        np.testing.assert_allclose(alone.attention, joint.attention, atol=1e-5)
        assert alone.score == pytest.approx(joint.score, abs=1e-4)


def test_train_wrote_metrics_overlays_and_tensorboard(tiny_captioning_run):
    metrics = json.load(open(os.path.join(tiny_captioning_run, "metrics.json")))
    report = metrics["test_beam2"]
    assert report["count"] == TINY_CAPTIONING["test_size"]
    assert all(0.0 <= report[f"bleu{n}"] <= 1.0 for n in range(1, 5))
    # After one tiny epoch the captions may name no digit yet; the scores are there all the same.
    assert 0.0 <= report["localisation"] <= 1.0 and report["digit_words"] >= 0
    assert 0.0 <= report["localisation_chance"] <= 1.0
    assert os.path.getsize(os.path.join(tiny_captioning_run, "overlay-0.png")) > 1000
    for name in ("config.json", "model.keras", "vocab.txt", "train_state.json"):
        assert os.path.exists(os.path.join(tiny_captioning_run, name))
    events = [f for _, _, files in os.walk(os.path.join(tiny_captioning_run, "logs", "attention"))
              for f in files if "tfevents" in f]
    assert events  # the per-epoch overlay images
    greedy = captioning.evaluate(tiny_captioning_run, beam=1, quiet=True, plots_count=0)
    assert set(json.load(open(os.path.join(tiny_captioning_run, "metrics.json")))) >= {
        "test_beam2", "test_greedy"
    }
    assert greedy["decoding"] == "greedy"


def test_attention_none_trains_and_skips_localisation(runs_root):
    run_dir = captioning.train(tiny_config(attention="none", run_id="blind"), quiet=True)
    report = json.load(open(os.path.join(run_dir, "metrics.json")))["test_beam2"]
    assert report["localisation"] is None and "bleu4" in report
    result = captioning.Captioner.from_run(run_dir).caption(
        [digit_scenes.make_scenes("test", 1, image_size=32)[0].image]
    )[0]
    assert result.attention.shape[1:] == (0, 0)


# -- resume ----------------------------------------------------------------------------------


def test_interrupted_run_resumes_and_more_epochs_continue(runs_root, capsys):
    config = tiny_config(run_id="resumed")
    run_dir = captioning.train(config, quiet=True, evaluate_after=False)
    # As if killed after the first epoch's checkpoint, before the final model was written.
    state_path = os.path.join(run_dir, "train_state.json")
    state = json.load(open(state_path))
    del state["finished"]
    json.dump(state, open(state_path, "w"))
    os.remove(os.path.join(run_dir, "model.keras"))
    capsys.readouterr()
    assert captioning.train(config, quiet=True, evaluate_after=False) == run_dir
    assert "nothing to do" not in capsys.readouterr().out
    assert os.path.exists(os.path.join(run_dir, "model.keras"))
    assert json.load(open(state_path))["epoch"] == 1

    # The same command with epochs=2 continues the finished run from its checkpoint.
    captioning.train(tiny_config(run_id="resumed", epochs=2), quiet=True, evaluate_after=False)
    out = capsys.readouterr().out
    assert "resuming" in out and "after epoch 1" in out
    final = json.load(open(state_path))
    assert final["finished"] and [h["epoch"] for h in final["history"]] == [1, 2]
    assert json.load(open(os.path.join(run_dir, "config.json")))["epochs"] == 2
    captioning.train(tiny_config(run_id="resumed", epochs=2), quiet=True, evaluate_after=False)
    assert "nothing to do" in capsys.readouterr().out
    with pytest.raises(training.RunError, match=r"different config \(units\)"):
        captioning.train(tiny_config(run_id="resumed", units=8), quiet=True)
    # Without run_id, epochs does not change the run folder (so more epochs continue it).
    assert captioning.run_id(tiny_config()) == captioning.run_id(tiny_config(epochs=5))
    assert captioning.run_id(tiny_config()) != captioning.run_id(tiny_config(units=8))


# -- COCO-format data ------------------------------------------------------------------------


def write_coco(folder, count=12):
    images, annotations = [], []
    (folder / "images" / "sub").mkdir(parents=True)
    for n, scene in enumerate(digit_scenes.make_scenes("train", count, image_size=40)):
        name = f"sub/scene_{n}.png"
        (folder / "images" / name).write_bytes(tf.io.encode_png(scene.image).numpy())
        images.append({"id": n, "file_name": name})
        annotations.append({"image_id": n, "caption": scene.caption})
        annotations.append({"image_id": n, "caption": scene.caption.capitalize() + "."})
    path = folder / "captions.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path, folder / "images"


def test_coco_data_trains_and_evaluates(runs_root, tmp_path):
    json_path, image_dir = write_coco(tmp_path)
    config = from_words(
        captioning.CaptioningConfig,
        [f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in TINY.items()]
        + [f"data=coco:{json_path}:{image_dir}", "run_id=coco"],
    )
    train, validation, test, report = captioning.load_splits(config)
    assert (len(train), len(validation), len(test)) == (10, 1, 1)
    assert train.images.shape[1:] == (32, 32, 3) and train.scenes is None
    assert all(len(refs) == 2 and refs[0] + ["."] == refs[1] for refs in train.references)
    assert str(json_path) in report
    same = apply_overrides(captioning.CaptioningConfig(), {
        **TINY, "coco_json": str(json_path), "image_dir": str(image_dir)})
    assert same.coco_paths() == config.coco_paths()

    run_dir = captioning.train(config, quiet=True)
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))["test_beam2"]
    assert metrics["count"] == 1 and metrics["localisation"] is None
    assert "." in captioning.Captioner.from_run(run_dir).vocab.tokens

    os.remove(image_dir / "sub" / "scene_3.png")
    with pytest.raises(DataError, match="scene_3.png.*does not exist"):
        captioning.load_splits(config)


# -- images from outside: judged by their header before they are decoded ---------------------


def _one_line(error):
    message = str(error.value)
    assert "\n" not in message, message
    return message


def test_coco_loader_refuses_oversized_and_foreign_images_naming_the_file(tmp_path):
    from zoo.images import MAX_IMAGE_BYTES

    json_path, image_dir = write_coco(tmp_path, count=4)
    config = tiny_config(coco_json=str(json_path), image_dir=str(image_dir))
    target = image_dir / "sub" / "scene_2.png"
    cases = [
        # 29 kB that decode to 90 MB: refused from its header, before decoding.
        (image_files.png_bomb(6000, 5000),
         "it is 6000x5000 = 30,000,000 pixels, more than the limit of 25,000,000 "
         "(zoo.images.MAX_IMAGE_PIXELS); downscale it first"),
        (image_files.jpeg_declaring(6000, 5000), "it is 6000x5000 = 30,000,000 pixels"),
        (image_files.gif_frames(7, 2000), "it is a GIF of 7 frames holding 28,000,000 pixels"),
        # TensorFlow decodes WebP, but the documented formats are JPEG, PNG, GIF and BMP.
        (image_files.pil_file("WEBP"), "it is a WebP file, not a JPEG, PNG, GIF or BMP file; "
                                       "convert it to PNG or JPEG"),
        (image_files.pil_file("TIFF"), "it is a TIFF file"),
    ]
    for data, message in cases:
        target.write_bytes(data)
        with pytest.raises(DataError) as error:
            captioning.load_splits(config)
        assert f"Cannot read image file {str(target)!r}: {message}" in _one_line(error)
    # More bytes than the limit: refused from the file's size, before it is read (a sparse file).
    with open(target, "wb") as f:
        f.write(image_files.png_bomb(40, 30))
        f.truncate(MAX_IMAGE_BYTES + 1)
    with pytest.raises(DataError) as error:
        captioning.load_splits(config)
    assert (f"Cannot read image file {str(target)!r}: it is {MAX_IMAGE_BYTES + 1:,} bytes, more "
            f"than the limit of {MAX_IMAGE_BYTES:,} (zoo.images.MAX_IMAGE_BYTES)") in _one_line(error)


def test_captioner_refuses_oversized_and_foreign_bytes_naming_the_image(captioner):
    good = tf.io.encode_png(digit_scenes.make_scenes("test", 1, image_size=32)[0].image).numpy()
    with pytest.raises(DataError) as error:
        captioner.caption([good, image_files.png_bomb(6000, 5000)])
    assert _one_line(error).startswith("Cannot read image 1: it is 6000x5000 = 30,000,000 pixels")
    for kind, data in image_files.not_images().items():
        with pytest.raises(DataError) as error:
            captioner.caption([good, data])
        assert _one_line(error).startswith("Cannot read image 1: it is "), kind
        assert "not a JPEG, PNG, GIF or BMP file" in str(error.value), kind
    # GIF and BMP files are read, as the same pixels in a PNG.
    pixels = np.asarray(digit_scenes.make_scenes("test", 2, image_size=40)[1].image)
    from PIL import Image

    files = []
    for kind in ("PNG", "GIF", "BMP"):
        out = io.BytesIO()
        Image.fromarray(pixels).convert("L").save(out, kind)  # grey: GIF keeps every level
        files.append(out.getvalue())
    results = captioner.caption(files, beam=1)
    assert results[1].tokens == results[0].tokens and results[2].tokens == results[0].tokens


# -- config ----------------------------------------------------------------------------------


def test_config_errors_name_the_problem(tmp_path):
    words = captioning.CaptioningConfig
    with pytest.raises(ConfigError, match="not a known attention.*luong_general"):
        from_words(words, ["attention=luong"])
    with pytest.raises(ConfigError, match="expected digits or coco:CAPTIONS.json:IMAGE_DIR"):
        from_words(words, ["data=flickr"])
    with pytest.raises(ConfigError, match="caption file .*missing.json.* does not exist"):
        from_words(words, [f"data=coco:{tmp_path}/missing.json:{tmp_path}"])
    with pytest.raises(ConfigError, match="coco_json= and image_dir= go together"):
        from_words(words, ["coco_json=x.json"])
    with pytest.raises(ConfigError, match="units .*must equal feature_dim"):
        from_words(words, ["attention=luong_dot", "units=64", "feature_dim=128"])
    with pytest.raises(ConfigError, match="weights=imagenet needs a keras.applications backbone"):
        from_words(words, ["weights=imagenet"])
    with pytest.raises(ConfigError, match="not a known image encoder"):
        from_words(words, ["backbone=resnet9"])
    config = from_words(words, ["encoder_filters=8,16", "context_gate=false"])
    assert config.encoder_filters == (8, 16) and config.context_gate is False
    assert captioning.config_from_json(json.loads(json.dumps(to_dict(config)))) == config


# -- hyperparameter search -------------------------------------------------------------------


def test_search_space_names_config_fields_and_covers_every_attention():
    import keras_tuner as kt

    hp = kt.HyperParameters()
    config = captioning.search_space(hp, captioning.CaptioningConfig())
    fields = {f.name for f in dataclasses.fields(captioning.CaptioningConfig)}
    assert {p.name for p in hp.space} <= fields
    attention = next(p for p in hp.space if p.name == "attention")
    assert set(attention.values) == set(ATTENTION_TYPES)
    config.validate()  # the first values drawn make a valid config


def test_a_tiny_tune_trial_runs_and_its_best_values_load_back(runs_root):
    from recipes import tuning

    words = [f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
             for k, v in {**TINY, "beam_size": 1}.items()]
    settings, words = tuning.split_tuning_words([*words, "tuner=random", "max_trials=1"])
    out_dir = tuning.tune(
        "captioning", from_words(captioning.CaptioningConfig, words), **settings
    )
    trials = json.load(open(os.path.join(out_dir, "trials.json")))["trials"]
    assert [t["status"] for t in trials] == ["COMPLETED"]
    assert 0.0 <= trials[0]["metrics"]["val_bleu4"] <= 1.0
    assert trials[0]["hyperparameters"]["beam_size"] == 1  # held: set on the command line
    best = os.path.join(out_dir, "best.json")
    config = from_words(captioning.CaptioningConfig, [f"hp={best}"])
    for key, value in json.load(open(best))["hyperparameters"].items():
        assert getattr(config, key) == value
