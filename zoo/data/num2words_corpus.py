"""A parallel corpus of number sentences generated with `num2words`: no download needed.

Each sentence says one or more numbers in words, in one of several shapes (a number, an ordinal,
a year, a date, a list, a sum, a range). Chaining numbers gives source sentences from 1 to over
60 tokens, which is where an encoder squeezed into one vector starts to lose the input.

    >>> pairs = make_corpus(1000, seed=0)            # English -> French by default
    >>> pairs.train[0]
    ('nine , one hundred fifty-four thousand nine hundred seventy-five and seventeen', 'neuf , cent cinquante-quatre mille neuf cent soixante-quinze et dix-sept')

Sentences are deduplicated and split after shuffling, so no source sentence is in two splits.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import re

from zoo.errors import DataError, missing_extra

try:
    from num2words import CONVERTER_CLASSES, num2words
except ModuleNotFoundError as e:  # an extra: pip install 'attention-zoo[data]'
    raise missing_extra(e) from None

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
def _words(n: int, lang: str, to: str) -> str:
    text = num2words(n, lang=lang, to=to)
    if lang.startswith("en") and to == "cardinal":
        # "three thousand, six hundred and one" -> "three thousand six hundred one": the comma
        # and "and" inside a number would be ambiguous with the list separators (is "five
        # hundred and six" 506, or 500 and 6?).
        text = text.replace(",", "").replace(" and ", " ")
    return text


def supported_languages() -> list[str]:
    return sorted(CONVERTER_CLASSES)


def _number(rng: random.Random, max_digits: int) -> int:
    # Log-uniform over the number of digits, so small and large numbers are both common.
    digits = rng.randint(1, max_digits)
    return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)


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
        self.langs = (source_lang, target_lang)
        self.max_digits = max_digits
        self.max_items = max_items
        self.shapes = ["number", "list", "list", "list"]
        if all(lang in _WORDS for lang in self.langs):
            self.shapes += ["ordinal", "year", "date", "sum", "range", "list_of_dates"]

    def words(self, n: int, lang: str, to: str = "cardinal") -> str:
        return _words(n, lang, to)

    def sentence(self, rng: random.Random) -> tuple[str, str]:
        shape = rng.choice(self.shapes)
        out = []
        if shape == "number":
            n = _number(rng, self.max_digits)
            return tuple(self.words(n, lang) for lang in self.langs)
        if shape == "ordinal":
            n = rng.randint(1, 10**rng.randint(1, 4))
            return tuple(self.words(n, lang, "ordinal") for lang in self.langs)
        if shape == "year":
            n = rng.randint(1000, 2099)
            return tuple(self.words(n, lang, "year") for lang in self.langs)
        if shape in ("date", "list_of_dates"):
            k = 1 if shape == "date" else rng.randint(2, 4)
            dates = [(rng.randint(1, 28), rng.randint(1, 12), rng.randint(1000, 2099)) for _ in range(k)]
            for lang in self.langs:
                parts = [_date(lang, *d) for d in dates]
                out.append(self._join(parts, lang))
            return tuple(out)
        if shape == "sum":
            k = rng.randint(2, 4)
            nums = [_number(rng, self.max_digits - 1) for _ in range(k)]
            for lang in self.langs:
                plus, equals = _WORDS[lang][1], _WORDS[lang][2]
                terms = f" {plus} ".join(self.words(n, lang) for n in nums)
                out.append(f"{terms} {equals} {self.words(sum(nums), lang)}")
            return tuple(out)
        if shape == "range":
            a = _number(rng, self.max_digits)
            b = a + _number(rng, self.max_digits)
            for lang in self.langs:
                frm, to = _WORDS[lang][3], _WORDS[lang][4]
                out.append(f"{frm} {self.words(a, lang)} {to} {self.words(b, lang)}")
            return tuple(out)
        # A list: the shape that reaches the long-sentence regime.
        k = rng.randint(2, self.max_items)
        nums = [_number(rng, self.max_digits) for _ in range(k)]
        for lang in self.langs:
            out.append(self._join([self.words(n, lang) for n in nums], lang))
        return tuple(out)

    def _join(self, parts: list[str], lang: str) -> str:
        if len(parts) == 1:
            return parts[0]
        last = f" {_WORDS[lang][0]} " if lang in _WORDS else " , "
        return " , ".join(parts[:-1]) + last + parts[-1]


def _tidy(text: str) -> str:
    # One space between words and before punctuation, as the tokenizer would split it.
    return re.sub(r"\s+", " ", re.sub(r"\s*,\s*", " , ", text)).strip().lower()


def make_corpus(
    train_size: int,
    validation_size: int = 1000,
    test_size: int = 2000,
    source_lang: str = "en",
    target_lang: str = "fr",
    seed: int = 0,
    max_digits: int = 7,
    max_items: int = 10,
) -> Corpus:
    """Generates `train_size + validation_size + test_size` distinct sentence pairs.

    Args:
        train_size, validation_size, test_size: sentence pairs in each split.
        source_lang, target_lang: any language code `num2words` supports (`supported_languages()`).
        seed: the corpus is a pure function of its arguments.
        max_digits: the largest numbers have this many digits.
        max_items: lists chain up to this many numbers (longer lists, longer sentences).

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
        src, tgt = gen.sentence(rng)
        src = _tidy(src)
        seen.setdefault(src, _tidy(tgt))
    pairs = list(seen.items())
    random.Random(seed + 1).shuffle(pairs)
    test = pairs[:test_size]
    validation = pairs[test_size : test_size + validation_size]
    train = pairs[test_size + validation_size :]
    return Corpus(train=train, validation=validation, test=test)
