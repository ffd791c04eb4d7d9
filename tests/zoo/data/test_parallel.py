"""Split files of a parallel corpus: how a split is named, what `check_split` rejects (one-line
`DataError`s), and the Python and tf.data readers giving the same pairs."""

import os
import threading

import pytest

from zoo.data import parallel
from zoo.errors import DataError


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("data/train.tsv", ("data/train.tsv", "")),
        ("train.en,train.fr", ("train.en", "train.fr")),
        (" train.en , train.fr ", ("train.en", "train.fr")),
    ],
)
def test_parse_split_forms(spec, expected):
    split = parallel.parse_split("train", spec)
    assert (split.name, split.source_path, split.target_path) == ("train", *expected)
    assert split.is_tsv == (not expected[1])
    assert split.paths == tuple(p for p in expected if p)
    assert str(split) == ",".join(split.paths)


@pytest.mark.parametrize("spec", ["", " ", "a.en,", ",a.fr", "a,b,c"])
def test_parse_split_error_shows_both_forms(spec):
    with pytest.raises(DataError) as e:
        parallel.parse_split("valid", spec)
    message = str(e.value)
    assert f"valid={spec!r}" in message
    assert ".tsv" in message and "valid=data/valid.en,data/valid.fr" in message
    assert "\n" not in message


def _check(spec):
    """`check_split`'s one-line message for `spec` (which must be rejected)."""
    with pytest.raises(DataError) as e:
        parallel.check_split(parallel.parse_split("train", spec))
    message = str(e.value)
    assert "\n" not in message
    return message


def test_check_split_missing_file(tmp_path):
    path = tmp_path / "nope.tsv"
    assert _check(str(path)) == f"train file {path} does not exist"
    good = tmp_path / "a.en"
    good.write_text("one\n")
    assert "does not exist" in _check(f"{good},{path}")


def test_check_split_folder(tmp_path):
    message = _check(str(tmp_path))
    assert str(tmp_path) in message and "is not a regular file" in message


def test_check_split_fifo_does_not_hang(tmp_path):
    fifo = tmp_path / "pipe.tsv"
    os.mkfifo(fifo)
    result = {}

    def check():
        try:
            parallel.check_split(parallel.parse_split("train", str(fifo)))
        except DataError as e:
            result["message"] = str(e)

    thread = threading.Thread(target=check, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():  # unblock the reader so the test process can exit, then fail
        with open(fifo, "w"):
            pass
        pytest.fail("check_split blocked on a FIFO")
    assert "is not a regular file" in result["message"] and "FIFO" in result["message"]


@pytest.mark.parametrize("content", ["", "\n\n", "  \t \n\r\n"])
def test_check_split_empty_file(tmp_path, content):
    path = tmp_path / "train.tsv"
    path.write_text(content)
    message = _check(str(path))
    assert message.startswith(f"train file {path} is empty") and "one sentence per line" in message


def test_check_split_parallel_files_of_different_lengths(tmp_path):
    (tmp_path / "a.en").write_text("one\ntwo\nthree\n")
    (tmp_path / "a.fr").write_text("un\ndeux\n")
    message = _check(f"{tmp_path / 'a.en'},{tmp_path / 'a.fr'}")
    assert "not parallel" in message
    assert f"{tmp_path / 'a.en'} has 3 lines" in message and f"{tmp_path / 'a.fr'} has 2" in message


def test_check_split_tsv_without_tabs(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("no tab here\nnor here\n")
    message = _check(str(path))
    assert "has no tab" in message and "source<TAB>target" in message
    assert "train=SOURCE,TARGET" in message


def test_check_split_counts_lines(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("a\tb\n\nc\td\n")
    assert parallel.check_split(parallel.parse_split("train", str(path))) == 3


# The same corpus as a TSV and as two plain-text files. Lines with an empty side are skipped, a
# TSV's extra columns ignored, \r\n endings and runs of whitespace cleaned up.
PAIRS = [
    ("In the beginning", "Au commencement"),
    ("", "seul côté"),
    ("only source", "   "),
    ("", ""),
    ("  runs   of \t spaces ", " des   espaces  "),
    ("L'Éternel dit: « Où es-tu? »", "The LORD said: Where art thou?"),
    ("crlf line", "ligne crlf"),
    ("last", "dernier"),
]
EXPECTED = [
    ("In the beginning", "Au commencement"),
    ("runs of spaces", "des espaces"),
    ("L'Éternel dit: « Où es-tu? »", "The LORD said: Where art thou?"),
    ("crlf line", "ligne crlf"),
    ("last", "dernier"),
]


def _write_corpus(folder):
    """(tsv spec, two-files spec) holding `PAIRS`; the TSV has extra columns on some lines."""
    tsv, source, target = [], [], []
    for i, (s, t) in enumerate(PAIRS):
        end = "\r\n" if s.startswith("crlf") else "\n"
        extra = "\tscore=0.9\tid" if i % 2 else ""
        tsv.append(f"{s.replace(chr(9), ' ')}\t{t}{extra}{end}")
        source.append(s + end)
        target.append(t + end)
    tsv.insert(3, "\n")  # a blank line
    tsv_path, source_path, target_path = (folder / n for n in ("c.tsv", "c.en", "c.fr"))
    tsv_path.write_bytes("".join(tsv).encode("utf-8"))
    source_path.write_bytes("".join(source).encode("utf-8"))
    target_path.write_bytes("".join(target).encode("utf-8"))
    return str(tsv_path), f"{source_path},{target_path}"


def _dataset_pairs(split):
    return [(s.numpy().decode("utf-8"), t.numpy().decode("utf-8"))
            for s, t in parallel.pairs_dataset(split)]


def test_iter_pairs_and_pairs_dataset_agree_for_tsv_and_text_files(tmp_path):
    for spec in _write_corpus(tmp_path):
        split = parallel.parse_split("train", spec)
        parallel.check_split(split)
        assert list(parallel.iter_pairs(split)) == EXPECTED, spec
        assert parallel.read_pairs(split) == EXPECTED, spec
        assert _dataset_pairs(split) == EXPECTED, spec


def test_readers_agree_on_stray_carriage_returns_and_edge_whitespace(tmp_path):
    """A lone \\r inside a line (common in scraped corpora) does not end the line: both readers
    split lines on \\n only, as `check_split` counts them, so parallel files stay aligned."""
    (tmp_path / "r.en").write_bytes(b"one\rtwo\nthree\x0b\nfour\n")
    (tmp_path / "r.fr").write_bytes(b"un\ndeux\ntrois\rquatre\n")
    (tmp_path / "r.tsv").write_bytes(b"one\rtwo\tun\nthree\x0b\tdeux\nfour\ttrois\rquatre\n")
    for spec in (f"{tmp_path / 'r.en'},{tmp_path / 'r.fr'}", str(tmp_path / "r.tsv")):
        split = parallel.parse_split("train", spec)
        assert parallel.check_split(split) == 3
        # tf.data's TextLineDataset drops every "\r"; the Python reader does the same.
        expected = [("onetwo", "un"), ("three", "deux"), ("four", "troisquatre")]
        assert list(parallel.iter_pairs(split)) == expected, spec
        assert _dataset_pairs(split) == expected, spec
