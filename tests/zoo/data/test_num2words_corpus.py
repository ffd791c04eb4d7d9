"""The generated number corpus: English numbers written the ways people write them, French right,
lists that read one way, determinism by seed."""

import functools
import os
import random

import pytest
from num2words import num2words

from zoo.data import num2words_corpus
from zoo.errors import DataError

# An English reader written here, apart from the generator: it reads the numbers of any of the
# four styles (plain, British "and", commas between groups, both) back into values.
_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate(
    "twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)}
_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9}


def _styles(n: int) -> set[str]:
    """The four ways of writing n, tokenised as the corpus is."""
    native = num2words(n, lang="en").replace(",", " ,")  # "one thousand , two hundred and five"
    no_and = native.replace(" and ", " ")
    return {native, no_and, native.replace(" ,", ""), no_and.replace(" ,", "")}


@functools.lru_cache(maxsize=None)
def _value(words: str) -> int | None:
    """The number these words say, if they are one number written in one of the four styles."""
    total = current = 0
    for w in words.split():
        if w in (",", "and"):
            continue
        if w == "hundred":
            current *= 100
        elif w in _SCALES:
            total, current = total + current * _SCALES[w], 0
        elif "-" in w and w.split("-")[0] in _TENS and w.split("-")[1] in _UNITS:
            current += _TENS[w.split("-")[0]] + _UNITS[w.split("-")[1]]
        elif w in _UNITS or w in _TENS:
            current += _UNITS.get(w, 0) + _TENS.get(w, 0)
        else:
            return None
    n = total + current
    return n if words in _styles(n) else None


def _read_list(sentence: str) -> list[int] | None:
    """The corpus's list grammar: items between " ; ", the last after " ; and "."""
    parts = sentence.split(" ; ")
    if len(parts) > 1:
        if not parts[-1].startswith("and "):
            return None
        parts[-1] = parts[-1][len("and "):]
    values = [_value(p) for p in parts]
    return None if None in values else values


def _french_list(values: list[int]) -> str:
    words = [num2words(v, lang="fr") for v in values]
    return words[0] if len(words) == 1 else " ; ".join(words[:-1]) + " ; et " + words[-1]


def _significant(n: int) -> int:
    return len(str(n).rstrip("0"))


def _numbers_only(sentence: str) -> bool:
    vocabulary = {*_UNITS, *_TENS, *_SCALES, "hundred", "and", ",", ";"}
    return all(w in vocabulary or w.split("-")[0] in _TENS for w in sentence.split())


@pytest.fixture(scope="module")
def corpus():
    return num2words_corpus.make_corpus(3000, 100, 200, seed=3)


def _all(c):
    return c.train + c.validation + c.test


def test_english_numbers_come_in_every_style(corpus):
    sources = [s for s, _ in _all(corpus)]
    single = [s for s in sources if _value(s) is not None]
    with_and = [s for s in single if " and " in s and "," not in s]  # "six hundred and thirty-eight"
    with_commas = [s for s in single if "," in s and " and " not in s]  # "one thousand , two hundred"
    both = [s for s in single if "," in s and " and " in s]  # as num2words writes them
    plain = [s for s in single if "," not in s and " and " not in s and "hundred" in s]
    for name, found in (("and", with_and), ("commas", with_commas), ("both", both), ("plain", plain)):
        assert len(found) > 10, f"only {len(found)} single numbers written with {name}"
    # The four styles inside longer sentences too, and numbers past the millions.
    assert any(" hundred and " in s and " ; " in s for s in sources)
    assert any(" thousand , " in s and " plus " in s for s in sources)
    targets = " ".join(t for _, t in _all(corpus))
    assert " milliards " in targets and " millions " in targets
    # Round numbers as people use them: "two million", "three billion", "one thousand , two hundred".
    values = [_value(s) for s in single]
    assert sum(v >= 10**6 and _significant(v) == 1 for v in values) > 5
    assert sum(1000 <= v < 10**6 and _significant(v) <= 3 and v % 1000 for v in values) > 5


@pytest.mark.parametrize("style, english", [
    ("plain", "six hundred thirty-eight"),
    ("and", "six hundred and thirty-eight"),
    ("commas", "six hundred thirty-eight"),
    ("and_commas", "six hundred and thirty-eight"),
])
def test_the_styles_of_638(style, english):
    gen = num2words_corpus._Generator("en", "fr", 10, 7)
    assert gen.words(638, "en", "cardinal", style) == english
    assert gen.words(638, "fr", "cardinal", style) == "six cent trente-huit"


@pytest.mark.parametrize("n, english, french", [
    (638, "six hundred and thirty-eight", "six cent trente-huit"),
    (1200, "one thousand , two hundred", "mille deux cents"),
    (1005, "one thousand and five", "mille cinq"),
    (80, "eighty", "quatre-vingts"),
    (80_000, "eighty thousand", "quatre-vingt mille"),
    (200_000_000, "two hundred million", "deux cents millions"),
    (2_000_000, "two million", "deux millions"),
    (3_000_000_000, "three billion", "trois milliards"),
    (1_000_000_000, "one billion", "un milliard"),
    (2_000_006, "two million and six", "deux millions six"),
])
def test_known_numbers_in_the_corpus_french(n, english, french):
    """Each of these, in a sentence of its own or as a list item, has exactly this French."""
    gen = num2words_corpus._Generator("en", "fr", 10, 7)
    styled = {num2words_corpus._tidy(gen.words(n, "en", "cardinal", s)) for s in num2words_corpus.EN_STYLES}
    assert english in styled
    assert {gen.words(n, "fr", "cardinal", s) for s in num2words_corpus.EN_STYLES} == {french}


def test_every_number_and_list_sentence_reads_one_way_with_its_french(corpus):
    """Sentences made only of numbers and list punctuation read as one list of numbers under the
    corpus's list grammar, and that list's French (num2words) is the target."""
    checked = lists = 0
    for src, tgt in _all(corpus):
        if not _numbers_only(src):
            continue
        values = _read_list(src)
        if values is None:  # a year such as "nineteen ninety-nine": not a cardinal
            assert " ; " not in src, f"a list that does not read as numbers: {src!r}"
            continue
        assert tgt == _french_list(values), src
        checked += 1
        lists += len(values) > 1
    assert checked > 600 and lists > 600


def test_no_number_contains_the_list_punctuation():
    """Why lists read one way: no number, in any style, contains ";" or starts with "and", so the
    " ; " and " ; and " between items cannot be inside one."""
    gen = num2words_corpus._Generator("en", "fr", 10, 7)

    rng = random.Random(1)
    for _ in range(3000):
        n = num2words_corpus._number(rng, 10)
        for style in num2words_corpus.EN_STYLES:
            words = num2words_corpus._tidy(gen.words(n, "en", "cardinal", style))
            assert ";" not in words and not words.startswith("and ")
            assert _value(words) == n  # and the reader reads it back


def test_the_same_english_never_has_two_frenches():
    """The corpus keeps the first French of a repeated English sentence: there must be one."""
    gen = num2words_corpus._Generator("en", "fr", 10, 7)

    rng = random.Random(2)
    seen = {}
    for _ in range(5000):
        src, tgt = (num2words_corpus._tidy(t) for t in gen.sentence(rng))
        assert seen.setdefault(src, tgt) == tgt, src


def test_deterministic_by_seed():
    a = num2words_corpus.make_corpus(300, 20, 20, seed=5)
    assert a == num2words_corpus.make_corpus(300, 20, 20, seed=5)
    assert a != num2words_corpus.make_corpus(300, 20, 20, seed=6)
    f = num2words_corpus.form_tests(20, seed=5)
    assert f == num2words_corpus.form_tests(20, seed=5)
    assert f != num2words_corpus.form_tests(20, seed=6)


def test_sentences_fit_the_recipe_and_max_digits_bounds_the_numbers(corpus):
    lengths = [len(s.split()) for s, _ in _all(corpus)] + [len(t.split()) for _, t in _all(corpus)]
    assert max(lengths) <= 100 and max(len(s.split()) for s, _ in _all(corpus)) > 60
    small = num2words_corpus.make_corpus(300, 20, 20, seed=0, max_digits=3)
    lists = [_read_list(s) for s, _ in _all(small) if " ; " in s and _numbers_only(s)]
    assert len(lists) > 50 and max(max(v) for v in lists) < 1000  # (years run to 2099)


def test_bad_sizes_are_one_line_errors():
    with pytest.raises(DataError, match=r"max_digits=0: must be a whole number, at least 1"):
        num2words_corpus.make_corpus(10, max_digits=0)
    with pytest.raises(DataError, match=r"max_digits=16: at most 15"):
        num2words_corpus.make_corpus(10, max_digits=16)
    with pytest.raises(DataError, match=r"max_items=0"):
        num2words_corpus.make_corpus(10, max_items=0)


def test_form_tests_hold_one_form_each_and_leave_out_the_training_sentences(corpus, tmp_path):
    exclude = {s for s, _ in _all(corpus)}
    forms = num2words_corpus.form_tests(60, exclude, seed=4)
    assert set(forms) == set(num2words_corpus.FORMS)
    for form, pairs in forms.items():
        assert len(pairs) == 60, form
        assert not exclude & {s for s, _ in pairs}, form
        for src, tgt in pairs:
            values = _read_list(src)
            assert values is not None and tgt == _french_list(values), (form, src)
            if form == "lists":
                assert len(values) > 1
                continue
            assert len(values) == 1
            if form == "large":
                assert values[0] >= 10**7
                continue
            if form == "round":
                assert values[0] >= 100 and _significant(values[0]) <= 3
                continue
            assert values[0] < 10**7
            assert ("," in src) == ("commas" in form), (form, src)
            assert (" and " in src) == (form in ("and", "and_commas")), (form, src)
    # The command line writes them as TSV files for `evaluate --test`.
    rc = num2words_corpus.main(["forms", str(tmp_path), "--size", "5", "--train-size", "50",
                                "--validation-size", "5", "--test-size", "5"])
    assert rc == 0
    names = sorted(os.listdir(tmp_path))
    assert names == sorted(f"forms-{f}.tsv" for f in num2words_corpus.FORMS)
    lines = (tmp_path / "forms-and.tsv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 5 and all(" and " in line.split("\t")[0] for line in lines)


def test_forms_command_bad_arguments_are_one_line_errors(tmp_path, capsys):
    rc = num2words_corpus.main(["forms", str(tmp_path / "out"), "--max-digits", "0"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == "error: max_digits=0: must be a whole number, at least 1"
    assert not (tmp_path / "out").exists()
