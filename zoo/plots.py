"""Attention plots for both recipes and the TensorBoard callback (matplotlib, Agg, no pyplot).

Figures are built as `matplotlib.figure.Figure` on an Agg canvas, never through `pyplot`, so
plotting needs no display, keeps no global figure list (nothing to close, no leak in long
training runs) and is safe from any thread. Files are written atomically: to a temporary file
beside the target, then renamed over it, so a reader never sees half a PNG.

    >>> fig = plot_alignment(["le", "chat"], ["the", "cat"], [[0.9, 0.1], [0.2, 0.8]], "a.png")
    >>> image = figure_to_image(fig)  # uint8 (1, H, W, 4), for tf.summary.image
"""

from __future__ import annotations

import math
import os
import tempfile

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

DPI = 100


def plot_alignment(source_tokens, output_tokens, weights, path=None, title=None):
    """Heatmap of attention weights: source tokens across, output tokens down.

    Args:
        source_tokens: the `Tv` source tokens (strings), labelled on the x axis.
        output_tokens: the `Tq` output tokens, labelled on the y axis.
        weights: array-like `(Tq, Tv)`, or larger (padding beyond the tokens is cropped).
        path: where to write a PNG, or `None`. Folders are created as needed.
        title: the figure title, or `None`.

    Returns:
        The `matplotlib.figure.Figure`.
    """
    source_tokens, output_tokens = [str(t) for t in source_tokens], [str(t) for t in output_tokens]
    rows, cols = len(output_tokens), len(source_tokens)
    weights = np.asarray(weights, dtype=np.float32)
    if rows and cols:
        if weights.ndim != 2 or weights.shape[0] < rows or weights.shape[1] < cols:
            raise ValueError(
                "`weights` must be 2-D and at least (len(output_tokens), len(source_tokens)) = "
                f"({rows}, {cols}); received shape {weights.shape}."
            )
        weights = weights[:rows, :cols]
    width = min(16.0, 2.5 + 0.35 * cols)
    height = min(16.0, 2.0 + 0.3 * rows)
    fig = _figure(width, height)
    ax = fig.add_subplot()
    if rows and cols:
        image = ax.imshow(weights, cmap="viridis", aspect="auto", vmin=0.0, interpolation="nearest")
        fig.colorbar(image, ax=ax, fraction=0.05)
        ax.set_xticks(range(cols), source_tokens, rotation=90, fontsize=8)
        ax.set_yticks(range(rows), output_tokens, fontsize=8)
    else:
        _no_data(ax, "no tokens")
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(str(title))
    return _finish(fig, path)


def plot_caption_attention(image, words, attention_maps, path=None, boxes=None):
    """The image, then one panel per generated word with its attention map laid over the image.

    Each `(h, w)` map is stretched over the whole image and smoothed (bilinear), so a feature-grid
    cell lights up the part of the image it sees.

    Args:
        image: the image, `(H, W, 3)`, `(H, W, 1)` or `(H, W)`: uint8, or float in [0, 1]
            (floats above 1 are taken to be on the 0-255 scale).
        words: the `T` generated words; each titles its panel.
        attention_maps: array-like `(T, h, w)` (or `(T, h * w)` for a square grid), or longer
            along `T` (maps beyond the words are dropped).
        path: where to write a PNG, or `None`.
        boxes: optional `(n, 4)` boxes `(x0, y0, x1, y1)` in pixels, drawn on the first panel.

    Returns:
        The `matplotlib.figure.Figure`.
    """
    image = _displayable(image)
    words = [str(w) for w in words]
    maps = np.asarray(attention_maps, dtype=np.float32)
    if words:
        if maps.ndim == 2:  # flattened grid
            side = math.isqrt(maps.shape[1])
            if side * side != maps.shape[1]:
                raise ValueError(
                    "`attention_maps` of shape (T, h * w) need a square grid; received "
                    f"{maps.shape}. Pass them as (T, h, w)."
                )
            maps = maps.reshape(maps.shape[0], side, side)
        if maps.ndim != 3 or maps.shape[0] < len(words):
            raise ValueError(
                f"`attention_maps` must have shape (T, h, w) with T >= len(words) = {len(words)}; "
                f"received {maps.shape}."
            )
    panels = 1 + len(words)
    columns = min(panels, 5)
    grid_rows = math.ceil(panels / columns)
    fig = _figure(2.2 * columns, 2.4 * grid_rows)
    height, width = image.shape[:2]
    extent = (-0.5, width - 0.5, height - 0.5, -0.5)  # maps cover the image exactly
    for k in range(panels):
        ax = fig.add_subplot(grid_rows, columns, k + 1)
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, extent=extent)
        ax.set_axis_off()
        if k == 0:
            ax.set_title("image", fontsize=9)
            for x0, y0, x1, y1 in np.asarray(boxes if boxes is not None else []).reshape(-1, 4):
                ax.add_patch(
                    Rectangle(
                        (x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="lime",
                        linewidth=1.2,
                    )
                )
        else:
            attention = maps[k - 1]
            ax.imshow(
                attention, cmap="inferno", alpha=0.6, extent=extent, interpolation="bilinear",
                vmin=0.0, vmax=max(float(attention.max()), 1e-9),
            )
            ax.set_title(words[k - 1], fontsize=9)
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
    return _finish(fig, path)


def plot_quality_by_length(table, path=None, metric="exact_match"):
    """One line per model of a metric against source-length buckets.

    Args:
        table: `{model_name: {bucket_label: value}}`, e.g.
            `{"bahdanau": {"1-10": 0.9, "11-20": 0.8}, "no attention": {...}}`. Buckets are shown
            in the order they are first met; a model missing a bucket has a gap there.
        path: where to write a PNG, or `None`.
        metric: the y axis label. Defaults to `"exact_match"`.

    Returns:
        The `matplotlib.figure.Figure`.
    """
    buckets = list(dict.fromkeys(label for values in table.values() for label in values))
    fig = _figure(max(5.0, 1.0 + 0.6 * len(buckets)), 4.0)
    ax = fig.add_subplot()
    if buckets:
        positions = np.arange(len(buckets))
        for name, values in table.items():
            ys = [float(values[b]) if b in values else np.nan for b in buckets]
            ax.plot(positions, ys, marker="o", label=str(name))
        ax.set_xticks(positions, [str(b) for b in buckets], rotation=45 if len(buckets) > 8 else 0)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    else:
        _no_data(ax, "no results")
    ax.set_xlabel("source length")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by source length")
    return _finish(fig, path)


def figure_to_image(fig):
    """Renders a figure to a uint8 array `(1, height, width, 4)` (RGBA), for `tf.summary.image`."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba(), dtype=np.uint8).copy()[None]


def save_figure(fig, path):
    """Writes a figure as PNG atomically (temporary file + `os.replace`), creating folders."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".png")
    try:
        with os.fdopen(handle, "wb") as f:
            fig.savefig(f, format="png", dpi=DPI)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a plot is meant to be read
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return path


def _figure(width, height):
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _finish(fig, path):
    if path is not None:
        save_figure(fig, path)
    return fig


def _no_data(ax, text):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _displayable(image):
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (3, 4)):
        raise ValueError(
            f"`image` must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); received {image.shape}."
        )
    if image.dtype != np.uint8:
        image = image.astype(np.float32)
        if image.size and image.max() > 1.0:
            image = image / 255.0
        image = np.clip(image, 0.0, 1.0)
    return image
