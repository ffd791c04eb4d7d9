"""A parallel corpus of number sentences generated with `num2words`: no download needed.

Each sentence says one or more numbers in words, in one of several shapes (a number, an ordinal,
a year, a date, a list, a sum, a range). Chaining numbers gives source sentences from 1 to over
60 tokens, which is where an encoder squeezed into one vector starts to lose the input.

English numbers come in the ways people write them, one way per sentence (`EN_STYLES`): plain
("one thousand two hundred thirty-eight"), with the British "and" ("... two hundred and
thirty-eight"), with commas between the groups ("one thousand , two hundred thirty-eight"), or
with both, as `num2words` writes them. Since "and" and commas can be inside a number, lists put
a semicolon between their items and "; and" before the last ("five ; six hundred and one ; and
seven"): no number contains a semicolon or starts with "and", so every list reads one way.

    >>> pairs = make_corpus(1000, seed=0)            # English -> French by default
    >>> pairs.train[3]
    ('twenty-six thousand , nine hundred ; and ninety-nine thousand', 'vingt-six mille neuf cents ; et quatre-vingt-dix-neuf mille')

Sentences are deduplicated and split after shuffling, so no source sentence is in two splits.
`form_tests` draws held-out test sentences of one form each (plain, "and", commas, both, large
numbers, round numbers, lists), to score a model on each; `python -m zoo.data.num2words_corpus forms DIR`
writes them as TSV files for `python -m recipes evaluate nmt --test DIR/forms-and.tsv`.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import random
import re
import sys

from zoo.errors import DataError, missing_extra

try:
    from num2words import CONVERTER_CLASSES, num2words
except ModuleNotFoundError as e:  # an extra: pip install 'attention-zoo[data]'
    raise missing_extra(e) from None

# Bumped whenever the same arguments give different sentences (caches are keyed by it).
VERSION = 2

# The ways English numbers are written: whether "and" precedes the last two digits of a group of
# hundreds ("six hundred and thirty-eight", "one thousand and five"), whether commas separate the
# groups ("one thousand , two hundred"). "and_commas" is how `num2words` writes them.
EN_STYLES = ("plain", "and", "commas", "and_commas")
# The held-out test forms of `form_tests`: single numbers of up to `STYLE_DIGITS` digits in each
# style, single numbers of more digits (up to max_digits, any style), round numbers (one to three
# significant digits, any style), lists (any style).
FORMS = (*EN_STYLES, "large", "round", "lists")
STYLE_DIGITS = 7

# Words the sentence shapes need besides numbers, per language. Languages num2words knows but
# that are not listed here still work, with the shapes that need no words (numbers and lists).
_MONTHS = {
    "en": "january february march april may june july august september october november december",
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
    "es": "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre",
    "de": "Januar Februar März April Mai Juni Juli August September Oktober November Dezember",
    "it": "gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre novembre dicembre",
    "pt": "janeiro fevereiro março abril maio junho julho agosto setembro outubro novembro dezembro",
    "nl": "januari februari maart april mei juni juli augustus september oktober november december",
}
_WORDS = {
    #      and    plus    equals   from    to
    "en": ("and", "plus", "equals", "from", "to"),
    "fr": ("et", "plus", "égale", "de", "à"),
    "es": ("y", "más", "es igual a", "de", "a"),
    "de": ("und", "plus", "gleich", "von", "bis"),
    "it": ("e", "più", "fa", "da", "a"),
    "pt": ("e", "mais", "é igual a", "de", "a"),
    "nl": ("en", "plus", "is", "van", "tot"),
}


def _date(lang: str, day: int, month: int, year: int) -> str:
    m = _MONTHS[lang].split()[month - 1]
    y = num2words(year, lang=lang, to="year")
    if lang == "en":
        return f"the {num2words(day, lang=lang, to='ordinal')} of {m} {y}"
    first = day == 1 and lang in ("fr", "it", "pt", "es")
    d = num2words(day, lang=lang, to="ordinal") if first else num2words(day, lang=lang)
    if lang == "de":
        return f"der {num2words(day, lang=lang, to='ordinal')} {m} {y}"
    if lang in ("es", "pt"):
        article = "el " if lang == "es" else ""
        return f"{article}{d} de {m} de {y}"
    article = {"fr": "le ", "it": "il "}.get(lang, "")
    return f"{article}{d} {m} {y}"


@functools.lru_cache(maxsize=200_000)
def _words(n: int, lang: str, to: str, style: str = "and_commas") -> str:
    text = num2words(n, lang=lang, to=to)
    if lang.startswith("en") and to in ("cardinal", "ordinal"):
        if "commas" not in style:
            text = text.replace(",", "")
        if "and" not in style.split("_"):
            text = text.replace(" and ", " ")
    return text


def supported_languages() -> list[str]:
    return sorted(CONVERTER_CLASSES)


def _number(rng: random.Random, max_digits: int, min_digits: int = 1, round_share: float = 0.25) -> int:
    # Log-uniform over the number of digits, so small and large numbers are both common.
    digits = rng.randint(min_digits, max_digits)
    n = rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)
    if digits > 2 and rng.random() < round_share:
        # A round number, as people use them ("two million", "one thousand , two hundred",
        # "three billion"): one to three significant digits, zeros after.
        scale = 10 ** (digits - rng.randint(1, min(3, digits - 1)))
        n = n // scale * scale
    return n


@dataclasses.dataclass(frozen=True)
class Corpus:
    train: list[tuple[str, str]]
    validation: list[tuple[str, str]]
    test: list[tuple[str, str]]


class _Generator:
    def __init__(self, source_lang: str, target_lang: str, max_digits: int, max_items: int):
        known = supported_languages()
        for lang in (source_lang, target_lang):
            if lang not in known:
                raise DataError(
                    f"num2words has no language {lang!r}; choose one of: {', '.join(known)}"
                )
        for key, value in (("max_digits", max_digits), ("max_items", max_items)):
            if not isinstance(value, int) or value < 1:
                raise DataError(f"{key}={value!r}: must be a whole number, at least 1")
        if max_digits > 15:
            raise DataError(f"max_digits={max_digits}: at most 15 (up to the hundreds of trillions)")
        self.langs = (source_lang, target_lang)
        self.max_digits = max_digits
        self.max_items = max_items
        self.shapes = ["number", "list", "list", "list"]
        if all(lang in _WORDS for lang in self.langs):
            self.shapes += ["ordinal", "year", "date", "sum", "range", "list_of_dates"]

    def words(self, n: int, lang: str, to: str = "cardinal", style: str = "and_commas") -> str:
        return _words(n, lang, to, style)

    def sentence(self, rng: random.Random, shape: str | None = None, style: str | None = None,
                 min_digits: int = 1, max_digits: int | None = None,
                 round_share: float = 0.25) -> tuple[str, str]:
        """One (source, target) pair: a random shape and English style unless given; numbers
        of `min_digits` to `max_digits` digits (default: the generator's) in the number and list
        shapes, a `round_share` of them round."""
        shape = shape or rng.choice(self.shapes)
        style = style or rng.choice(EN_STYLES)
        top = max_digits or self.max_digits

        def say(n, to="cardinal"):
            return tuple(self.words(n, lang, to, style) for lang in self.langs)

        if shape == "number":
            return say(_number(rng, top, min_digits, round_share))
        if shape == "ordinal":
            return say(rng.randint(1, 10**rng.randint(1, 4)), "ordinal")
        if shape == "year":
            return say(rng.randint(1000, 2099), "year")
        if shape in ("date", "list_of_dates"):
            k = 1 if shape == "date" else rng.randint(2, 4)
            dates = [(rng.randint(1, 28), rng.randint(1, 12), rng.randint(1000, 2099)) for _ in range(k)]
            return tuple(self._join([_date(lang, *d) for d in dates], lang) for lang in self.langs)
        if shape == "sum":
            k = rng.randint(2, 4)
            nums = [_number(rng, max(1, self.max_digits - 1)) for _ in range(k)]
            out = []
            for lang in self.langs:
                plus, equals = _WORDS[lang][1], _WORDS[lang][2]
                terms = f" {plus} ".join(self.words(n, lang, "cardinal", style) for n in nums)
                out.append(f"{terms} {equals} {self.words(sum(nums), lang, 'cardinal', style)}")
            return tuple(out)
        if shape == "range":
            a = _number(rng, self.max_digits)
            b = a + _number(rng, self.max_digits)
            out = []
            for lang in self.langs:
                frm, to = _WORDS[lang][3], _WORDS[lang][4]
                out.append(f"{frm} {self.words(a, lang, 'cardinal', style)} {to} "
                           f"{self.words(b, lang, 'cardinal', style)}")
            return tuple(out)
        # A list: the shape that reaches the long-sentence regime.
        k = rng.randint(2, max(2, self.max_items))
        nums = [_number(rng, top, min_digits, round_share) for _ in range(k)]
        return tuple(
            self._join([self.words(n, lang, "cardinal", style) for n in nums], lang)
            for lang in self.langs
        )

    def _join(self, parts: list[str], lang: str) -> str:
        # "a ; b ; and c": a semicolon between items, since commas and "and" can be inside a
        # number ("one thousand , two hundred and five" is one number, not three).
        if len(parts) == 1:
            return parts[0]
        last = f" ; {_WORDS[lang][0]} " if lang in _WORDS else " ; "
        return " ; ".join(parts[:-1]) + last + parts[-1]


def _tidy(text: str) -> str:
    # One space between words and before punctuation, as the tokenizer would split it.
    return re.sub(r"\s+", " ", re.sub(r"\s*([,;])\s*", r" \1 ", text)).strip().lower()


def make_corpus(
    train_size: int,
    validation_size: int = 1000,
    test_size: int = 2000,
    source_lang: str = "en",
    target_lang: str = "fr",
    seed: int = 0,
    max_digits: int = 10,
    max_items: int = 7,
    max_tokens: int = 100,
) -> Corpus:
    """Generates `train_size + validation_size + test_size` distinct sentence pairs.

    Args:
        train_size, validation_size, test_size: sentence pairs in each split.
        source_lang, target_lang: any language code `num2words` supports (`supported_languages()`).
        seed: the corpus is a pure function of its arguments (and `VERSION`).
        max_digits: the numbers of the number, list and range shapes have 1 to `max_digits`
            digits, each count equally likely (10: up to 9,999,999,999, "neuf milliards ..."),
            a quarter of those of 3 digits or more round ("trois milliards");
            sums add numbers of up to `max_digits - 1` digits, ranges end below twice the
            largest; ordinals stop at 10,000, years and dates run from 1000 to 2099.
        max_items: lists chain 2 to this many numbers (longer lists, longer sentences).
        max_tokens: sentences with more tokens on either side are drawn again (the nmt recipe
            cuts its inputs at 100 tokens).

    Returns:
        A `Corpus` of `(source, target)` pairs, lower-cased, punctuation spaced.
    """
    gen = _Generator(source_lang, target_lang, max_digits, max_items)
    rng = random.Random(seed)
    wanted = train_size + validation_size + test_size
    seen: dict[str, str] = {}
    attempts = 0
    while len(seen) < wanted:
        attempts += 1
        if attempts > 20 * wanted + 1000:
            raise DataError(
                f"could only make {len(seen)} distinct sentences of the {wanted} asked for; "
                "ask for fewer or raise max_digits / max_items"
            )
        src, tgt = (_tidy(t) for t in gen.sentence(rng))
        if len(src.split()) <= max_tokens and len(tgt.split()) <= max_tokens:
            seen.setdefault(src, tgt)
    pairs = list(seen.items())
    random.Random(seed + 1).shuffle(pairs)
    test = pairs[:test_size]
    validation = pairs[test_size : test_size + validation_size]
    train = pairs[test_size + validation_size :]
    return Corpus(train=train, validation=validation, test=test)


def form_tests(
    size: int,
    exclude=(),
    seed: int = 1,
    source_lang: str = "en",
    target_lang: str = "fr",
    max_digits: int = 10,
    max_items: int = 7,
) -> dict[str, list[tuple[str, str]]]:
    """Up to `size` distinct test pairs per form of `FORMS`, none whose source is in `exclude`
    (the sources a model was trained on):

    - "plain", "and", "commas", "and_commas": one number of 1 to `STYLE_DIGITS` digits written
      in that style, only where the style shows ("and" and "and_commas": a number with "and";
      "commas" and "and_commas": a number with a comma);
    - "large": one number of `STYLE_DIGITS + 1` to `max_digits` digits, any style (none if
      max_digits is `STYLE_DIGITS` or less);
    - "round": one number of 3 to `max_digits` digits, of which one to three significant
      ("two million", "one thousand , two hundred", "three billion"), any style;
    - "lists": a list of 2 to `max_items` numbers of up to `max_digits` digits, any style.
    """
    gen = _Generator(source_lang, target_lang, max_digits, max_items)
    exclude = set(exclude)
    out = {}
    for form in FORMS:
        rng = random.Random(f"{seed}-{form}")
        seen: dict[str, str] = {}
        if form == "large" and max_digits <= STYLE_DIGITS:
            out[form] = []
            continue
        for _ in range(50 * size):
            if len(seen) >= size:
                break
            if form in EN_STYLES:
                src, tgt = gen.sentence(rng, "number", form, max_digits=min(max_digits, STYLE_DIGITS))
                if ("and" in form.split("_") and " and " not in src) or ("commas" in form and "," not in src):
                    continue
            elif form == "large":
                src, tgt = gen.sentence(rng, "number", min_digits=STYLE_DIGITS + 1)
            elif form == "round":
                src, tgt = gen.sentence(rng, "number", min_digits=3, round_share=1.0)
            else:
                src, tgt = gen.sentence(rng, "list")
            src = _tidy(src)
            if src not in exclude:
                seen.setdefault(src, _tidy(tgt))
        out[form] = list(seen.items())
    return out


def write_tsv(path: str, pairs: list[tuple[str, str]]) -> None:
    """`source<TAB>target` lines, written atomically."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(f"{s}\t{t}\n" for s, t in pairs)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zoo.data.num2words_corpus",
        description="Write held-out test files, one per form of English number "
                    f"({', '.join(FORMS)}), as DIR/forms-<form>.tsv, none of whose sentences is in "
                    "the corpus of the same arguments (the nmt recipe's defaults unless given).",
    )
    parser.add_argument("command", choices=["forms"])
    parser.add_argument("dir")
    parser.add_argument("--size", type=int, default=500, help="sentences per form")
    parser.add_argument("--train-size", type=int, default=40000)
    parser.add_argument("--validation-size", type=int, default=1000)
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--source-lang", default="en")
    parser.add_argument("--target-lang", default="fr")
    parser.add_argument("--seed", type=int, default=0, help="the corpus's seed")
    parser.add_argument("--max-digits", type=int, default=10)
    parser.add_argument("--max-items", type=int, default=7)
    args = parser.parse_args(argv)
    try:
        corpus = make_corpus(args.train_size, args.validation_size, args.test_size,
                             args.source_lang, args.target_lang, args.seed, args.max_digits,
                             args.max_items)
        exclude = {s for split in (corpus.train, corpus.validation, corpus.test) for s, _ in split}
        tests = form_tests(args.size, exclude, seed=args.seed + 1, source_lang=args.source_lang,
                           target_lang=args.target_lang, max_digits=args.max_digits,
                           max_items=args.max_items)
        os.makedirs(args.dir, exist_ok=True)
    except (DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for form, pairs in tests.items():
        if pairs:
            path = os.path.join(args.dir, f"forms-{form}.tsv")
            write_tsv(path, pairs)
            print(f"{path}: {len(pairs)} sentences")
    return 0


if __name__ == "__main__":
    sys.exit(main())
