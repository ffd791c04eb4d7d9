"""Using a trained model: `python -m recipes translate|caption`, `recipes.load`, the SavedModel
path and `recipes.plot_attention`, on the tiny trained runs."""

import os
import subprocess
import sys

import numpy as np
import pytest

import recipes
from recipes import config as recipes_config
from recipes import nmt, training
from recipes.__main__ import main
from recipes.nmt import inference as nmt_inference
from recipes.nmt.inference import SavedModelTranslator, Translation, Translator
from tests.conftest import TINY_NMT

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BEAM = TINY_NMT["beam_size"]


@pytest.fixture(scope="module")
def translator(tiny_nmt_run):
    return Translator.from_run(tiny_nmt_run)


@pytest.fixture(scope="module")
def sources(translator):
    """Test-split sentences, shortest first (a handful, so each command stays quick)."""
    pairs = nmt.load_pairs(translator.config)[2]
    return sorted({s for s, _ in pairs}, key=len)[:: max(1, len(pairs) // 8)][:8]


def _lines(text):
    assert text.endswith("\n")
    return text[:-1].split("\n")


# -- translate: sentences on the command line ------------------------------------------------


def test_translate_prints_one_line_per_sentence_in_order(tiny_nmt_run, translator, sources,
                                                          capsys):
    # Options may come before the sentences too.
    argv = ["translate", "nmt", "--run", tiny_nmt_run, sources[0], "", sources[-1], sources[1]]
    assert main(argv) == 0
    out = capsys.readouterr().out
    expected = translator.translate([sources[0], sources[-1], sources[1]], beam=BEAM)
    assert _lines(out) == [expected[0].text, "", expected[1].text, expected[2].text]


def test_n_best_prints_numbered_lines_with_scores(tiny_nmt_run, translator, sources, capsys):
    assert main(["translate", "nmt", sources[2], sources[3], "--run", tiny_nmt_run,
                 "--beam", "3", "--n-best", "2"]) == 0
    rows = [line.split("\t") for line in _lines(capsys.readouterr().out)]
    assert [r[0] for r in rows] == ["1", "1", "2", "2"]
    best = translator.translate(sources[2:4], beam=3, n_best=2)
    for k, result in enumerate(best):
        first, second = rows[2 * k], rows[2 * k + 1]
        assert first[2] == result.text and second[2] == result.alternatives[0].text
        assert float(first[1]) == pytest.approx(result.score, abs=1e-4)
        assert float(first[1]) >= float(second[1])


def test_plot_writes_one_heatmap_per_sentence(tiny_nmt_run, sources, tmp_path, capsys):
    plots = tmp_path / "plots"
    assert main(["translate", "nmt", sources[0], "   ", sources[4], "--run", tiny_nmt_run,
                 "--beam", "1", "--plot", str(plots)]) == 0
    assert sorted(os.listdir(plots)) == ["attention-1.png", "attention-3.png"]  # none for blank
    assert all(os.path.getsize(plots / name) > 1000 for name in os.listdir(plots))
    assert f"wrote 2 attention heatmap(s) to {plots}" in capsys.readouterr().err


# -- translate: files and pipes --------------------------------------------------------------


def test_file_round_trip_keeps_every_line_in_place(tiny_nmt_run, translator, sources, tmp_path,
                                                   capsys):
    lines = [s.encode() for s in sources[:3]] + [b"", b"   ", "caf\xe9 ".encode("latin-1"),
                                                 sources[3].encode() + b"\r", sources[4].encode()]
    source = tmp_path / "test.en"
    source.write_bytes(b"\n".join(lines))  # CRLF on one line, no newline after the last
    target = tmp_path / "test.fr"
    code = main(["translate", "nmt", "--run", tiny_nmt_run, "--input", str(source),
                 "--output", str(target), "--beam", "1"])
    err = capsys.readouterr().err
    assert code == 1  # a line could not be read; every other line is translated
    assert "line 6: invalid UTF-8 (byte 0xe9 at column 4)" in err
    assert "translated 5 of 8 lines" in err and "(2 empty, 1 invalid UTF-8)" in err
    assert "100%" in err  # the progress bar, on stderr
    valid = sources[:5]
    expected = [r.text for r in translator.translate(valid, beam=1)]
    out = target.read_bytes().decode("utf-8")
    assert _lines(out) == expected[:3] + ["", "", ""] + expected[3:]
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


class _Echo:
    """A stand-in model whose translation of a sentence is the sentence upper-cased."""

    def __init__(self):
        self.calls = []

    def translate(self, texts, beam=None, n_best=1, batch_size=64, progress=None):
        self.calls.append(len(texts))
        out = []
        for t in texts:
            alternatives = [Translation(f"{t.upper()} #{k}", [], -1.0 - k, np.zeros((0, 0)), [])
                            for k in range(1, n_best)]
            out.append(Translation(t.upper(), [], -0.5, np.zeros((0, 0)), [], alternatives))
        if progress is not None:
            progress(len(texts))
        return out


def test_chunked_translation_keeps_order_and_numbers_n_best_lines(monkeypatch, tmp_path, capsys):
    echo = _Echo()
    monkeypatch.setattr(nmt_inference, "open_model", lambda *args: echo)
    monkeypatch.setattr(nmt_inference, "CHUNK_BATCHES", 2)
    lines = [f"sentence {i}" if i % 7 else "" for i in range(1, 31)]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["translate", "nmt", "--input", str(source), "--batch-size", "3"]) == 0
    assert _lines(capsys.readouterr().out) == [line.upper() for line in lines]
    assert len(echo.calls) == 5 and sum(echo.calls) == 26  # chunks of 6 lines, blanks skipped
    assert main(["translate", "nmt", "--input", str(source), "--n-best", "2"]) == 0
    rows = _lines(capsys.readouterr().out)
    assert rows[:3] == ["1\t-0.5000\tSENTENCE 1", "1\t-2.0000\tSENTENCE 1 #1",
                        "2\t-0.5000\tSENTENCE 2"]
    assert len(rows) == 2 * 26 and not any(r.startswith("7\t") for r in rows)


def test_stdin_to_stdout_pipe_in_a_shell(tiny_nmt_run, translator, sources):
    data = "\n".join(sources[:4]).encode() + b"\n\n\xff\xfe\n" + sources[5].encode() + b"\n"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-m", "recipes", "translate", "nmt", "--run", tiny_nmt_run,
         "--input", "-", "--output", "-", "--beam", "1", "--batch-size", "2"],
        cwd=REPO, env=env, input=data, capture_output=True, timeout=300,
    )
    err = proc.stderr.decode()
    assert proc.returncode == 1, err  # line 6 is not UTF-8
    assert "line 6: invalid UTF-8" in err and "Traceback" not in err
    expected = [r.text for r in translator.translate(sources[:4] + [sources[5]], beam=1,
                                                     batch_size=2)]
    assert _lines(proc.stdout.decode()) == expected[:4] + ["", ""] + expected[4:]


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["translate", "nmt", "x", "--run", "/nonexistent/run"],
         "no nmt run at /nonexistent/run; `make train RECIPE=nmt`"),
        (["translate", "nmt", "x", "--model", "/nonexistent/exports/nmt/1"],
         "no SavedModel at /nonexistent/exports/nmt/1; `make export RECIPE=nmt`"),
        (["caption", "captioning", "x.png", "--run", "/nonexistent/run"],
         "no captioning run at /nonexistent/run; `make train RECIPE=captioning`"),
        (["translate", "nmt", "--input", "/nonexistent.txt"], "--input /nonexistent.txt: no such"),
        (["translate", "nmt"], "nothing to translate: give sentences, or --input FILE"),
        (["translate", "nmt", "x", "--input", "-"], "give sentences or --input FILE, not both"),
        (["translate", "nmt", "x", "--beam", "0"], "--beam 0: must be at least 1"),
        (["translate", "nmt", "x", "--run", "r", "--model", "m"], "--run (a run folder) or --model"),
        (["caption", "captioning"], "nothing to caption"),
    ],
)
def test_errors_are_one_line_and_say_how_to_fix(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_default_run_missing_names_the_command(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(recipes_config, "RUNS_ROOT", str(tmp_path))
    assert main(["translate", "nmt", "three"]) == 2
    latest = os.path.join(str(tmp_path), "nmt", "latest")
    assert f"no nmt run at {latest}; `make train RECIPE=nmt`" in capsys.readouterr().err


def test_n_best_beyond_the_beam_is_an_error(tiny_nmt_run, capsys):
    assert main(["translate", "nmt", "seven", "--run", tiny_nmt_run, "--beam", "2",
                 "--n-best", "3"]) == 2
    assert "n_best=3 cannot exceed the beam size 2" in capsys.readouterr().err


# -- from Python -----------------------------------------------------------------------------


def test_python_entry_point_and_plot_attention(tiny_nmt_run, sources, tmp_path):
    model = recipes.load(tiny_nmt_run)
    assert isinstance(model, Translator)
    results = model.translate(sources[:3], beam=BEAM, n_best=2)
    assert len(results) == 3
    for result in results:
        assert isinstance(result.text, str) and all(isinstance(t, str) for t in result.tokens)
        assert len(result.alternatives) == 1 and result.score >= result.alternatives[0].score
        assert result.attention.shape[1] == len(result.source_tokens)
        assert result.attention.shape[0] in (len(result.tokens), len(result.tokens) + 1)
        np.testing.assert_allclose(result.attention.sum(1), 1.0, atol=1e-4)
    fig = recipes.plot_attention(results[0], str(tmp_path / "a.png"), title=sources[0])
    assert os.path.getsize(tmp_path / "a.png") > 1000 and fig.axes


# -- an exported SavedModel ------------------------------------------------------------------


@pytest.fixture(scope="module")
def nmt_export(tiny_nmt_run, tmp_path_factory):
    from export import export

    root = tmp_path_factory.mktemp("exports")
    return export("nmt", tiny_nmt_run, str(root), tflite=False)["saved_model"]


@pytest.mark.slow
def test_saved_model_matches_the_run(nmt_export, translator, sources):
    model = recipes.load(nmt_export)
    assert isinstance(model, SavedModelTranslator)
    for beam in (1, None):  # greedy, then the export's beam search (the run's beam_size)
        exported = model.translate(sources + [""], beam=beam)
        keras_side = translator.translate(sources + [""], beam=beam)
        for a, b in zip(exported, keras_side, strict=True):
            assert (a.text, a.tokens, a.source_tokens) == (b.text, b.tokens, b.source_tokens)
            assert a.score == pytest.approx(b.score, abs=1e-4)
            np.testing.assert_allclose(a.attention, b.attention, atol=1e-5)
    with pytest.raises(ValueError, match="n_best=2: an exported SavedModel returns one"):
        model.translate(["seven"], beam=BEAM, n_best=2)


@pytest.mark.slow
def test_translate_command_with_model(nmt_export, translator, sources, tmp_path, capsys):
    versions_root = os.path.dirname(nmt_export)  # exports/nmt: its newest version is used
    argv = ["translate", "nmt", *sources[:2], "--model", versions_root, "--beam", "1",
            "--plot", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert _lines(out) == [r.text for r in translator.translate(sources[:2], beam=1)]
    assert sorted(os.listdir(tmp_path)) == ["attention-1.png", "attention-2.png"]


# -- caption ---------------------------------------------------------------------------------


TINY_CAPTIONING = dict(train_size=64, validation_size=8, test_size=8, image_size=32,
                       encoder_filters=(4, 8, 8), feature_dim=16, embedding_dim=8, units=16,
                       batch_size=32, epochs=1, beam_size=2, max_caption_length=8)


@pytest.fixture(scope="module")
def tiny_captioning_run(runs_root):
    from recipes import captioning
    from recipes.config import apply_overrides

    config = apply_overrides(captioning.CaptioningConfig(),
                             {**TINY_CAPTIONING, "run_id": "tiny-use"})
    return captioning.train(config, quiet=True, evaluate_after=False)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    import tensorflow as tf

    from zoo.data import digit_scenes

    folder = tmp_path_factory.mktemp("images")
    scenes = digit_scenes.make_scenes("test", 2, image_size=64)
    pixels = [s.image for s in scenes]  # uint8 (64, 64, 3)
    paths = [str(folder / "scene.png"), str(folder / "scene.jpg"), str(folder / "broken.png")]
    tf.io.write_file(paths[0], tf.io.encode_png(pixels[0]))
    tf.io.write_file(paths[1], tf.io.encode_jpeg(pixels[1]))
    with open(paths[2], "wb") as f:
        f.write(b"not an image")
    return paths


@pytest.mark.slow
def test_caption_command_skips_unreadable_images(tiny_captioning_run, images, tmp_path, capsys):
    good, jpeg, broken = images
    missing = str(tmp_path / "missing.png")
    argv = ["caption", "captioning", good, broken, missing, jpeg, "--run", tiny_captioning_run,
            "--plot", str(tmp_path / "plots")]
    assert main(argv) == 1
    captured = capsys.readouterr()
    rows = [line.split("\t") for line in _lines(captured.out)]
    model = recipes.load(tiny_captioning_run)
    expected = [c.text for c in model.caption([good, jpeg])]
    assert rows == [[good, expected[0]], [jpeg, expected[1]]]
    assert f"skipped: Cannot read image file '{broken}'" in captured.err
    assert f"skipped: Image file '{missing}' does not exist" in captured.err
    assert "2 of 4 images could not be read" in captured.err
    assert sorted(os.listdir(tmp_path / "plots")) == ["caption-1-scene.png", "caption-2-scene.png"]


@pytest.mark.slow
def test_caption_from_python(tiny_captioning_run, images, tmp_path):
    model = recipes.load(tiny_captioning_run)
    with open(images[0], "rb") as f:
        encoded = f.read()
    from_path, from_bytes = model.caption([images[0], encoded], beam=1)
    assert from_path.text == from_bytes.text and from_path.tokens
    assert from_path.attention.shape[0] in (len(from_path.tokens), len(from_path.tokens) + 1)
    recipes.plot_attention(from_path, str(tmp_path / "c.png"), image=images[0])
    assert os.path.getsize(tmp_path / "c.png") > 1000
    with pytest.raises(ValueError, match="need the image it describes"):
        recipes.plot_attention(from_path, str(tmp_path / "d.png"))


@pytest.fixture(scope="module")
def captioning_saved_model(tiny_captioning_run, tmp_path_factory):
    from export import export

    return export("captioning", tiny_captioning_run, str(tmp_path_factory.mktemp("exports")),
                  tflite=False)["saved_model"]


@pytest.mark.slow
@pytest.mark.parametrize("source", ["--run", "--model"])
def test_caption_command_refuses_oversized_and_foreign_images(
        tiny_captioning_run, captioning_saved_model, images, tmp_path, capsys, source):
    from tests import image_files

    good = images[0]
    bad = {
        "bomb.png": (image_files.png_bomb(6000, 5000),
                     "it is 6000x5000 = 30,000,000 pixels, more than the limit of 25,000,000 "
                     "(zoo.images.MAX_IMAGE_PIXELS); downscale it first."),
        "bomb.gif": (image_files.gif_declaring(6000, 5000), "it is 6000x5000 = 30,000,000 pixels"),
        "frames.gif": (image_files.gif_frames(7, 2000),
                       "it is a GIF of 7 frames holding 28,000,000 pixels in all, more than the "
                       "limit of 25,000,000 (zoo.images.MAX_IMAGE_PIXELS); every frame is "
                       "decoded: send the first frame alone, as a PNG."),
        "photo.webp": (image_files.pil_file("WEBP"),
                       "it is a WebP file, not a JPEG, PNG, GIF or BMP file; convert it to PNG "
                       "or JPEG."),
        "scan.tiff": (image_files.pil_file("TIFF"), "it is a TIFF file"),
        "empty.png": (b"", "it is empty, not a JPEG, PNG, GIF or BMP file."),
    }
    paths = []
    for name, (data, _) in bad.items():
        paths.append(str(tmp_path / name))
        with open(paths[-1], "wb") as f:
            f.write(data)
    where = tiny_captioning_run if source == "--run" else captioning_saved_model
    assert main(["caption", "captioning", good, *paths, "--beam", "1", source, where]) == 1
    captured = capsys.readouterr()
    expected = recipes.load(tiny_captioning_run).caption([good], beam=1)[0].text
    assert [line.split("\t") for line in _lines(captured.out)] == [[good, expected]]
    err = _lines(captured.err)
    for path, (_, message) in zip(paths, bad.values(), strict=True):
        line = f"skipped: Cannot read image file {path!r}: {message}"
        assert any(e.startswith(line) for e in err), (line, err)
    assert f"{len(paths)} of {len(paths) + 1} images could not be read" in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.slow
def test_caption_command_with_model(tiny_captioning_run, captioning_saved_model, images, tmp_path,
                                    capsys):
    folder = captioning_saved_model
    good, jpeg, broken = images
    run = recipes.load(tiny_captioning_run)
    for beam in (1, TINY_CAPTIONING["beam_size"]):  # the greedy, then the beam signature
        argv = ["caption", "captioning", good, broken, jpeg, "--model", folder,
                "--beam", str(beam), "--plot", str(tmp_path / f"plots{beam}")]
        assert main(argv) == 1
        captured = capsys.readouterr()
        assert f"skipped: Cannot read image file '{broken}'" in captured.err
        expected = [c.text for c in run.caption([good, jpeg], beam=beam)]
        assert [line.split("\t") for line in _lines(captured.out)] == [
            [good, expected[0]], [jpeg, expected[1]]]
        assert len(os.listdir(tmp_path / f"plots{beam}")) == 2
    with pytest.raises(training.RunError, match="not an nmt SavedModel.*taking \\['image'\\]"):
        SavedModelTranslator(folder)
