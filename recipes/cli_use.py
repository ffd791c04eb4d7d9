"""Using a trained model from the shell: `python -m recipes translate|caption ...`.

Thin wrappers over the Python entry point (`recipes.load(path)`, `.translate`, `.caption`,
`recipes.plot_attention`): they pick the model, read the input, print the results.

    python -m recipes translate nmt "three hundred forty-two" --beam 4 --n-best 2
    python -m recipes translate nmt --input test.en --output test.fr     # '-': stdin / stdout
    python -m recipes translate nmt "seven" --model exports/nmt/1        # an exported SavedModel
    python -m recipes caption captioning scene.png --plot plots/
    python -m recipes caption captioning scene.png --model exports/captioning  # newest version

Output: one translation per sentence, one line each, in input order (an empty or undecodable
input line gives an empty output line); with `--n-best K`, K lines per sentence of
`number<TAB>score<TAB>translation`, numbered from 1 (a file's line number); captions as
`image<TAB>caption`. Diagnostics and the progress bar go to stderr. Exit status: 0, or 1 when
some lines or images could not be read (each is named on stderr; the others are done).
"""

from __future__ import annotations

import os
import sys
import time

from recipes import training

# Lines translated per call of `translate` in file mode: enough for length-sorted batches,
# few enough that output reaches a pipe as it goes.
CHUNK_BATCHES = 16


# -- opening a model -------------------------------------------------------------------------


def open_model(recipe: str, run: str | None = None, model: str | None = None):
    """The `Translator` / `Captioner` of a run folder (default `runs/RECIPE/latest`), or a
    `SavedModelTranslator` for an exported SavedModel; errors name the command that makes one."""
    if run and model:
        raise ValueError("give --run (a run folder) or --model (an exported SavedModel), not both")
    if model:
        if recipe == "captioning":
            return SavedModelCaptioner(model)
        from recipes.translator import SavedModelTranslator

        return SavedModelTranslator(model)
    run = run or training.latest_run(recipe)
    if not os.path.isdir(os.path.realpath(run)):
        raise training.RunError(
            f"no {recipe} run at {run}; `make train RECIPE={recipe}` (or `python -m recipes "
            f"train {recipe}`) creates one, or pass an existing run folder with --run"
        )
    try:
        if recipe == "nmt":
            from recipes.translator import Translator

            return Translator.from_run(run)
        from recipes.captioning import Captioner

        return Captioner.from_run(run)
    except TypeError as e:  # its config.json has keys this recipe's config does not know
        raise training.RunError(
            f"{run} is not a {recipe} run ({e}); pass a {recipe} run folder with --run"
        ) from None


class SavedModelCaptioner:
    """An exported captioning SavedModel (`python -m export captioning`) behind the two calls the
    caption command makes on a `Captioner`: `load_images` and `caption`. Each image goes to the
    SavedModel at its own size (the graph resizes it as `Captioner` does); `beam=1` calls the
    `greedy` signature, any other beam `serving_default` (the run's beam size, fixed at export).
    """

    def __init__(self, path: str):
        import tensorflow as tf

        from recipes.translator import saved_model_folder, signature_inputs

        self.path = saved_model_folder(path, "captioning")
        self.model = tf.saved_model.load(self.path)
        signatures = sorted(self.model.signatures)
        inputs = signature_inputs(self.model) if "serving_default" in signatures else []
        if "greedy" not in signatures or inputs != ["image"]:
            raise training.RunError(
                f"{self.path} is not a captioning SavedModel: expected the signatures "
                f"serving_default and greedy taking `image`, found {signatures} taking {inputs}; "
                "`make export RECIPE=captioning` writes one"
            )

    def load_images(self, images) -> list:
        """Image files (or encoded bytes) -> uint8 `(H, W, 3)` arrays at their own size. Each
        header is checked before decoding (`zoo.images`: JPEG / PNG / GIF / BMP only, at most
        `MAX_IMAGE_BYTES` bytes and `MAX_IMAGE_PIXELS` pixels); a `DataError` names the image."""
        import tensorflow as tf

        from zoo import images as zoo_images
        from zoo.data import coco
        from zoo.errors import DataError

        out = []
        for n, image in enumerate(images):
            if isinstance(image, (bytes, bytearray)):
                name, image = f"image {n}", bytes(image)
            else:
                name = f"image file {os.fspath(image)!r}"
                image = coco.read_image_file(image)
            zoo_images.check_bytes(image, name)
            try:
                out.append(tf.io.decode_image(image, channels=3, expand_animations=False).numpy())
            except tf.errors.OpError:
                raise DataError(
                    f"Cannot read {name}: it is a corrupt {zoo_images.FORMATS} file that "
                    "TensorFlow cannot decode."
                ) from None
        return out

    def caption(self, images, beam=None, batch_size=1, progress=None) -> list:
        import tensorflow as tf

        from recipes.captioning import Caption

        signature = self.model.signatures["greedy" if beam == 1 else "serving_default"]
        results = []
        for image in images:
            out = signature(image=tf.constant(image[None], tf.uint8))
            words = [t.decode("utf-8") for t in out["tokens"].numpy()[0] if t]
            ended = "[END]" in words
            words = words[: words.index("[END]")] if ended else words
            results.append(Caption(
                text=out["caption"].numpy()[0].decode("utf-8"), tokens=words,
                score=float(out["score"].numpy()[0]),
                attention=out["attention"].numpy()[0, : len(words) + ended],
            ))
            if progress is not None:
                progress(1)
        return results


def _check_counts(beam, batch_size=1, n_best=1):
    for name, value in (("--beam", beam), ("--batch-size", batch_size), ("--n-best", n_best)):
        if value is not None and value < 1:
            raise ValueError(f"{name} {value}: must be at least 1")


# -- reading and writing lines ---------------------------------------------------------------


def split_lines(data: bytes) -> list[bytes]:
    """The lines of a file's bytes, ended by `\\n` or `\\r\\n`; a last line without an end counts."""
    if not data:
        return []
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    if lines and lines[0].startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark
        lines[0] = lines[0][3:]
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def decode_lines(lines: list[bytes], what: str = "line") -> tuple[list[str | None], list[int]]:
    """Each line decoded as UTF-8, `None` where it is not; reports each bad one on stderr.

    Returns the decoded lines and the (1-based) numbers of the bad ones.
    """
    texts, bad = [], []
    for number, line in enumerate(lines, 1):
        try:
            texts.append(line.decode("utf-8"))
        except UnicodeDecodeError as e:
            texts.append(None)
            bad.append(number)
            print(f"{what} {number}: invalid UTF-8 (byte 0x{line[e.start]:02x} at column "
                  f"{e.start + 1}); its output line is left empty", file=sys.stderr)
    return texts, bad


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as f:
        return f.read()


class _Output:
    """stdout (`-` or no path), or a file written to a temporary name and renamed at the end,
    so an interrupted run never leaves a half-translated file under the real name."""

    def __init__(self, path: str | None):
        self.path = None if path in (None, "-") else path
        if self.path is None:
            self.stream = sys.stdout
            if getattr(self.stream, "encoding", "utf-8").lower().replace("-", "") != "utf8":
                self.stream.reconfigure(encoding="utf-8")
        else:
            folder = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(folder):
                raise ValueError(f"--output {path}: folder {folder} does not exist")
            self.tmp = f"{self.path}.tmp-{os.getpid()}"
            self.stream = open(self.tmp, "w", encoding="utf-8", newline="\n")

    def write_lines(self, lines):
        self.stream.write("".join(f"{line}\n" for line in lines))
        self.stream.flush()

    def close(self, keep: bool):
        if self.path is None:
            return
        self.stream.close()
        if keep:
            os.replace(self.tmp, self.path)
        elif os.path.exists(self.tmp):
            os.remove(self.tmp)


def _format(number: int, result, n_best: int) -> list[str]:
    """The output lines for one input: its translation, or `n_best` numbered lines with scores."""
    if n_best == 1:
        return [result.text if result is not None else ""]
    if result is None:
        return []
    return [f"{number}\t{h.score:.4f}\t{h.text}" for h in [result, *result.alternatives]]


def _plot(results, numbers, sources, plot_dir, width):
    from recipes.translator import plot_translation

    written = 0
    for number, source, result in zip(numbers, sources, results, strict=True):
        if result is None or not result.source_tokens or result.attention.size == 0:
            continue  # nothing to draw: an empty line, or a model without attention
        path = os.path.join(plot_dir, f"attention-{number:0{width}d}.png")
        plot_translation(result, path, title=source[:60])
        written += 1
    return written


# -- translate -------------------------------------------------------------------------------


def translate_lines(model, texts, beam=None, n_best=1, batch_size=64, progress=None) -> list:
    """`model.translate` over `texts`, `None` (unreadable) and blank entries giving `None`."""
    todo = [i for i, t in enumerate(texts) if t is not None and t.strip()]
    done = model.translate([texts[i] for i in todo], beam=beam, n_best=n_best,
                           batch_size=batch_size, progress=progress)
    results = [None] * len(texts)
    for i, result in zip(todo, done, strict=True):
        results[i] = result
    return results


def translate(args) -> int:
    """`python -m recipes translate nmt ...`: see the module docstring."""
    if args.recipe != "nmt":
        raise ValueError(
            f"translate needs an nmt model, not {args.recipe}; images are captioned with "
            f"`python -m recipes caption {args.recipe} IMAGE ...`"
        )
    _check_counts(args.beam, args.batch_size, args.n_best)
    if args.texts and args.input:
        raise ValueError("give sentences or --input FILE, not both")
    if not args.texts and not args.input:
        raise ValueError("nothing to translate: give sentences, or --input FILE ('-' for stdin)")
    if args.input not in (None, "-") and not os.path.isfile(args.input):
        raise ValueError(f"--input {args.input}: no such file")
    model = open_model(args.recipe, args.run, args.model)  # before stdin: fail fast
    if args.input:
        texts, bad = decode_lines(split_lines(_read_input(args.input)), "line")
    else:
        # Command-line bytes that are not UTF-8 arrive as surrogates (PEP 383).
        raw = [t.encode("utf-8", "surrogateescape") for t in args.texts]
        texts, bad = decode_lines(raw, "sentence")
    if args.model and args.beam not in (None, 1):
        print(f"note: the SavedModel's beam size was fixed at export; --beam {args.beam} "
              "picks its beam search (serving_default)", file=sys.stderr)
    output = _Output(args.output)
    width = len(str(len(texts)))
    bar = None
    if args.input:
        from tqdm import tqdm

        bar = tqdm(total=sum(1 for t in texts if t is not None and t.strip()), unit="line",
                   file=sys.stderr, desc="translating", dynamic_ncols=True)
    t0 = time.time()
    plotted = 0
    chunk = args.batch_size * CHUNK_BATCHES if args.input else max(1, len(texts))
    ok = False
    try:
        for start in range(0, len(texts), chunk):
            part = texts[start : start + chunk]
            results = translate_lines(model, part, args.beam, args.n_best, args.batch_size,
                                      progress=bar.update if bar is not None else None)
            numbers = range(start + 1, start + len(part) + 1)
            output.write_lines(
                line for n, r in zip(numbers, results, strict=True) for line in _format(n, r, args.n_best)
            )
            if args.plot:
                plotted += _plot(results, numbers, part, args.plot, width)
        ok = True
    finally:
        if bar is not None:
            bar.close()
        output.close(keep=ok)
    if args.input:
        seconds = time.time() - t0
        blank = sum(1 for t in texts if t is not None and not t.strip())
        print(f"translated {len(texts) - blank - len(bad)} of {len(texts)} lines in "
              f"{seconds:.1f}s ({blank} empty, {len(bad)} invalid UTF-8)"
              + (f" -> {args.output}" if args.output not in (None, "-") else ""), file=sys.stderr)
    if args.plot:
        print(f"wrote {plotted} attention heatmap(s) to {args.plot}", file=sys.stderr)
    return 1 if bad else 0


# -- caption ---------------------------------------------------------------------------------


def caption(args) -> int:
    """`python -m recipes caption captioning IMAGE ...`: prints `image<TAB>caption` lines; an
    image that cannot be read is named on stderr and skipped (exit status 1 at the end)."""
    from zoo.errors import DataError

    if args.recipe != "captioning":
        raise ValueError(
            f"caption needs a captioning model, not {args.recipe}; sentences are translated "
            f"with `python -m recipes translate {args.recipe} \"...\"`"
        )
    if not args.images:
        raise ValueError("nothing to caption: give one or more image files")
    _check_counts(args.beam)
    model = open_model(args.recipe, args.run, args.model)
    names, pixels, failed = [], [], 0
    for path in args.images:
        try:
            pixels.append(model.load_images([path])[0])
            names.append(path)
        except DataError as e:
            failed += 1
            print(f"skipped: {e}", file=sys.stderr)
    results = model.caption(pixels, beam=args.beam) if pixels else []
    for name, result in zip(names, results, strict=True):
        print(f"{name}\t{result.text}")
    sys.stdout.flush()
    if args.plot:
        from recipes import plot_attention

        width = len(str(len(names)))
        written = 0
        for n, (name, result) in enumerate(zip(names, results, strict=True), 1):
            if result.attention.size == 0:
                continue  # a model without attention has no maps to draw
            stem = os.path.splitext(os.path.basename(name))[0]
            # The file itself, at its own size: the maps are stretched over the whole image.
            plot_attention(result, os.path.join(args.plot, f"caption-{n:0{width}d}-{stem}.png"),
                           image=name)
            written += 1
        print(f"wrote {written} attention overlay(s) to {args.plot}", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(args.images)} images could not be read", file=sys.stderr)
    return 1 if failed else 0
