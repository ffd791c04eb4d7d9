"""What the commands that use a trained model from the shell share (`python -m recipes
translate|caption ...`): opening a run or an exported SavedModel, reading input lines, writing
output atomically. Each recipe's own command lives in its `inference.py`.

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

from recipes import training
from zoo.errors import RunError


def open_model(recipe, run: str | None = None, model: str | None = None):
    """`recipe`'s trained model from a run folder (default `runs/RECIPE/latest`), or from an
    exported SavedModel, behind its Python API; errors name the command that makes one."""
    if run and model:
        raise ValueError("give --run (a run folder) or --model (an exported SavedModel), not both")
    if model:
        return recipe.load_saved_model(model)
    run = run or training.latest_run(recipe.name)
    if not os.path.isdir(os.path.realpath(run)):
        raise RunError(
            f"no {recipe.name} run at {run}; `make train RECIPE={recipe.name}` (or `python -m "
            f"recipes train {recipe.name}`) creates one, or pass an existing run folder with --run"
        )
    return recipe.load(run)


def check_counts(beam, batch_size=1, n_best=1):
    for name, value in (("--beam", beam), ("--batch-size", batch_size), ("--n-best", n_best)):
        if value is not None and value < 1:
            raise ValueError(f"{name} {value}: must be at least 1")


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


def read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as f:
        return f.read()


class Output:
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


def saved_model_folder(path: str, recipe: str = "nmt") -> str:
    """`path` itself when it holds a SavedModel, else its newest integer version
    (`exports/nmt` -> `exports/nmt/3`); a clear error, naming the command that writes one."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    if os.path.isdir(path):
        found = [int(n) for n in os.listdir(path)
                 if n.isdigit() and os.path.isfile(os.path.join(path, n, "saved_model.pb"))]
        if found:
            return os.path.join(path, str(max(found)))
    raise RunError(
        f"no SavedModel at {path}; `make export RECIPE={recipe}` (or `python -m export {recipe}`) "
        f"writes one to exports/{recipe}/<version>/"
    )


def signature_inputs(saved_model, name: str = "serving_default") -> list[str]:
    """The input names of a loaded SavedModel's signature (`["text"]` for nmt)."""
    return sorted(saved_model.signatures[name].structured_input_signature[1])
