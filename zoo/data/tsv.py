"""A user's own parallel corpus: `source<TAB>target[<TAB>anything]` lines (Anki/Tatoeba format)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat

from zoo.errors import DataError

MAX_LINE_CHARS = 10_000


@dataclasses.dataclass
class TsvReport:
    """What the loader kept and what it skipped: a count per reason and its first line numbers
    (memory stays flat however many lines a file skips)."""

    path: str
    kept: int = 0
    skipped: dict = dataclasses.field(default_factory=dict)  # reason -> count
    examples: dict = dataclasses.field(default_factory=dict)  # reason -> first line numbers

    EXAMPLES = 3

    def skip(self, reason: str, line_number: int) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        first = self.examples.setdefault(reason, [])
        if len(first) < self.EXAMPLES:
            first.append(line_number)

    @property
    def skipped_count(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        if not self.skipped:
            return f"{self.path}: {self.kept} pairs"
        parts = [
            f"{count} {reason} (e.g. line {', '.join(map(str, self.examples[reason]))})"
            for reason, count in sorted(self.skipped.items())
        ]
        return f"{self.path}: {self.kept} pairs; skipped {self.skipped_count}: {'; '.join(parts)}"


def read_tsv(path: str) -> tuple[list[tuple[str, str]], TsvReport]:
    """Reads `source<TAB>target` pairs; malformed lines are counted in the report, not kept.

    Skipped, by reason: no tab, empty source or target, invalid UTF-8, a NUL byte, a line over
    `MAX_LINE_CHARS` characters. An unreadable, empty or all-malformed file is a `DataError`.
    """
    if not os.path.exists(path):
        raise DataError(f"data file {path} does not exist (expected source<TAB>target lines)")
    if os.path.isdir(path):
        raise DataError(f"data={path} is a folder; give the path of a .tsv file")
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise DataError(
            f"data={path} is not a regular file (a FIFO, socket or device?); save the pairs to "
            "a .tsv file and give its path"
        )
    report = TsvReport(path)
    pairs = []
    try:
        with open(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                if len(raw) > 4 * MAX_LINE_CHARS:
                    report.skip("lines too long", number)
                    continue
                if b"\0" in raw:
                    report.skip("lines with NUL bytes", number)
                    continue
                try:
                    line = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError:
                    report.skip("lines of invalid UTF-8", number)
                    continue
                if number == 1:
                    line = line.lstrip("\ufeff")
                if not line.strip():
                    continue
                if len(line) > MAX_LINE_CHARS:
                    report.skip("lines too long", number)
                    continue
                fields = line.split("\t")
                if len(fields) < 2:
                    report.skip("lines without a tab", number)
                    continue
                source, target = fields[0].strip(), fields[1].strip()
                if not source or not target:
                    report.skip("lines with an empty side", number)
                    continue
                pairs.append((source, target))
    except OSError as e:
        raise DataError(f"cannot read data file {path}: {e.strerror}") from None
    report.kept = len(pairs)
    if not pairs:
        why = f" ({report.summary()})" if report.skipped else ""
        raise DataError(
            f"data file {path} has no source<TAB>target pairs{why}; "
            "each line must be a source sentence, a tab, then its translation"
        )
    return pairs, report


def split_pairs(pairs, validation_fraction=0.05, test_fraction=0.1, seed=0):
    """Deterministic split by a hash of the source: a source sentence lands in one split only."""
    train, validation, test = [], [], []
    for source, target in pairs:
        h = int.from_bytes(hashlib.sha256(f"{seed}:{source}".encode()).digest()[:8], "big")
        u = h / 2**64
        if u < test_fraction:
            test.append((source, target))
        elif u < test_fraction + validation_fraction:
            validation.append((source, target))
        else:
            train.append((source, target))
    return train, validation, test
