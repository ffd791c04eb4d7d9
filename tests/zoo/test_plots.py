import os

import numpy as np
import pytest
import tensorflow as tf

from zoo import plots


def png_shape(path):
    return tuple(tf.io.decode_png(tf.io.read_file(str(path))).shape)


def figure_pixels(fig):
    width, height = fig.get_size_inches() * plots.DPI
    return int(round(height)), int(round(width))


def test_plot_alignment_writes_a_png_of_the_figure_size(tmp_path):
    path = tmp_path / "deep" / "folder" / "alignment.png"
    weights = np.random.default_rng(0).random((4, 7))
    fig = plots.plot_alignment(
        ["le", "chat", "est", "noir", "<eos>", "<pad>", "<pad>"][:5],
        ["the", "cat", "is", "black"],
        weights,
        path=path,
        title="step 100",
    )
    assert png_shape(path) == (*figure_pixels(fig), 4)
    assert not [f for f in os.listdir(path.parent) if f.startswith(".tmp-")]
    assert fig.axes[0].get_title() == "step 100"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["le", "chat", "est", "noir", "<eos>"]


@pytest.mark.parametrize(
    "source, output, weights",
    [([], [], np.zeros((0, 0))), (["a"], ["b"], [[1.0]]), ([], ["b"], np.zeros((1, 0))), (["a"], [], [])],
)
def test_plot_alignment_empty_and_single_token(tmp_path, source, output, weights):
    path = tmp_path / "a.png"
    fig = plots.plot_alignment(source, output, weights, path=path)
    assert png_shape(path) == (*figure_pixels(fig), 4)


def test_plot_alignment_rejects_too_small_weights():
    with pytest.raises(ValueError, match=r"at least .*\(2, 3\).*\(2, 2\)"):
        plots.plot_alignment(["a", "b", "c"], ["x", "y"], np.ones((2, 2)))


def test_plot_caption_attention_panels_and_boxes(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3)).astype("uint8")
    words = ["a", "single", "five", "<eos>"]
    maps = np.random.default_rng(1).random((5, 8, 8))  # one map more than words: dropped
    path = tmp_path / "caption.png"
    fig = plots.plot_caption_attention(image, words, maps, path=path, boxes=[[10, 10, 34, 34]])
    assert png_shape(path) == (*figure_pixels(fig), 4)
    assert [ax.get_title() for ax in fig.axes] == ["image", *words]
    assert len(fig.axes[0].patches) == 1  # the box
    # The 8x8 map is stretched over the whole 64x64 image.
    assert fig.axes[1].images[1].get_extent() == fig.axes[1].images[0].get_extent()


@pytest.mark.parametrize(
    "image, words, maps",
    [
        (np.zeros((32, 32), "float32"), [], np.zeros((0, 4, 4))),
        (np.ones((32, 48, 1), "float32") * 200.0, ["one"], np.ones((1, 16))),  # flat square grid
        (np.zeros((16, 16, 3), "uint8"), ["x"], np.zeros((1, 2, 2))),  # all-zero attention
    ],
)
def test_plot_caption_attention_edge_cases(tmp_path, image, words, maps):
    path = tmp_path / "c.png"
    fig = plots.plot_caption_attention(image, words, maps, path=path)
    assert png_shape(path) == (*figure_pixels(fig), 4)
    assert len(fig.axes) == 1 + len(words)


def test_plot_caption_attention_bad_maps():
    with pytest.raises(ValueError, match=r"T >= len\(words\) = 2"):
        plots.plot_caption_attention(np.zeros((8, 8, 3)), ["a", "b"], np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="square grid"):
        plots.plot_caption_attention(np.zeros((8, 8, 3)), ["a"], np.zeros((1, 6)))
    with pytest.raises(ValueError, match="image"):
        plots.plot_caption_attention(np.zeros((8, 8, 5)), ["a"], np.zeros((1, 2, 2)))


def test_figure_to_image_for_tf_summary(tmp_path):
    fig = plots.plot_alignment(["a", "b"], ["c"], [[0.3, 0.7]])
    image = plots.figure_to_image(fig)
    assert image.dtype == np.uint8 and image.shape == (1, *figure_pixels(fig), 4)
    assert image[..., 3].max() == 255 and image[..., :3].std() > 0
    with tf.summary.create_file_writer(str(tmp_path)).as_default():
        assert tf.summary.image("alignment", image, step=0)


def test_plot_quality_by_length(tmp_path):
    table = {
        "bahdanau": {"1-10": 0.95, "11-20": 0.9, "21-40": 0.85, "41+": 0.8},
        "no attention": {"1-10": 0.93, "11-20": 0.7, "41+": 0.2},  # a bucket missing
    }
    path = tmp_path / "quality.png"
    fig = plots.plot_quality_by_length(table, path, metric="bleu")
    assert png_shape(path) == (*figure_pixels(fig), 4)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["bahdanau", "no attention"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1-10", "11-20", "21-40", "41+"]
    assert np.isnan(ax.get_lines()[1].get_ydata()[2])
    assert ax.get_ylabel() == "bleu"
    empty = tmp_path / "empty.png"
    plots.plot_quality_by_length({}, empty)
    assert os.path.exists(empty)


def test_failed_write_leaves_no_temporary_file(tmp_path):
    fig = plots.plot_alignment(["a"], ["b"], [[1.0]])
    target = tmp_path / "is_a_folder.png"
    target.mkdir()
    with pytest.raises(OSError):
        plots.save_figure(fig, target)
    assert sorted(os.listdir(tmp_path)) == ["is_a_folder.png"]
