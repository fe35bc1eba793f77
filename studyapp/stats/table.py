"""The in-memory vote table: one numpy array per column, string columns dictionary-coded.

A :class:`VoteTable` holds the columns of :data:`VOTE_COLUMNS`. Columns the analysis groups by
are stored as :class:`Factor` (``int32`` codes + a tuple of levels) so that 1M votes aggregate
with ``np.bincount`` instead of string comparisons. The five objective columns share one level
set, so their codes can be compared with each other directly.
"""

from __future__ import annotations

import csv
import gc
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

import numpy as np

from studyapp.stats.csvsafe import escape, unescape_column

VOTE_COLUMNS: tuple[str, ...] = (
    "round_id",
    "vote_id",
    "trial_id",
    "annotator",
    "item_id",
    "prompt_id",
    "prompt",
    "category",
    "seed",
    "trial_kind",
    "criterion",
    "objective_a",
    "objective_b",
    "left_objective",
    "right_objective",
    "choice",
    "winner",
    "expected",
    "response_ms",
    "answered_at",
)

# Optional: the final BLIP scores of the image shown on each side (empty when unknown, e.g. an
# imported render without scores). Older exports without these columns still load.
SCORE_NAMES = ("itc", "itm", "cap")
SCORE_COLUMNS: tuple[str, ...] = tuple(f"{side}_{name}_score" for side in ("left", "right") for name in SCORE_NAMES)

TRIAL_KINDS = ("regular", "attention", "practice")
CRITERIA = ("realism", "alignment")
CHOICES = ("left", "right", "tie")
SIDES = ("left", "right")
TIE = "tie"

INT_COLUMNS = ("seed", "response_ms")
# Free text (from prompt files) and pseudonyms (URL-safe tokens, which may start with '-').
TEXT_COLUMNS = ("annotator", "prompt", "category")
# Dictionary-coded columns; the objective columns share one level set.
OBJECTIVE_COLUMNS = ("objective_a", "objective_b", "left_objective", "right_objective", "winner")
FACTOR_COLUMNS = (
    "round_id",
    "trial_id",
    "annotator",
    "item_id",
    "prompt_id",
    "category",
    "trial_kind",
    "criterion",
    "choice",
    "expected",
) + OBJECTIVE_COLUMNS
# Kept as plain object arrays: unique per row or never grouped by.
RAW_COLUMNS = ("vote_id", "prompt", "answered_at")

_MAX_PROBLEMS = 50


class VotesFileError(ValueError):
    """A votes file or table is malformed; ``problems`` are ``line N: reason`` strings."""

    def __init__(self, problems: Sequence[str], *, source: str = "votes"):
        self.problems = list(problems)
        shown = self.problems[:_MAX_PROBLEMS]
        more = len(self.problems) - len(shown)
        text = f"{source} rejected ({len(self.problems)} problem(s)):\n" + "\n".join(f"- {p}" for p in shown)
        if more:
            text += f"\n- ... and {more} more"
        super().__init__(text)


@dataclass(frozen=True)
class Factor:
    """A dictionary-coded string column: ``levels[codes[i]]`` is row i's value."""

    codes: np.ndarray
    levels: tuple[str, ...]

    def decode(self) -> np.ndarray:
        return np.asarray(self.levels, dtype=object)[self.codes] if len(self.levels) else np.empty(len(self.codes), object)

    def code_of(self, value: str) -> int:
        """The code of ``value``, or -1 when no row can hold it."""
        try:
            return self.levels.index(value)
        except ValueError:
            return -1

    def is_in(self, values: Iterable[str]) -> np.ndarray:
        lut = np.zeros(len(self.levels) + 1, dtype=bool)
        for v in values:
            c = self.code_of(v)
            if c >= 0:
                lut[c] = True
        return lut[self.codes]

    def take(self, index: np.ndarray) -> "Factor":
        return Factor(self.codes[index], self.levels)


def _factorize(values: Sequence[str], vocab: dict[str, int] | None = None) -> tuple[np.ndarray, dict[str, int]]:
    """Codes of ``values`` in ``vocab`` (extended with new values in order of appearance)."""
    vocab = {} if vocab is None else vocab
    for v in dict.fromkeys(values):  # unique values, first-appearance order, at C speed
        if v not in vocab:
            vocab[v] = len(vocab)
    codes = np.fromiter(map(vocab.__getitem__, values), dtype=np.int32, count=len(values))
    return codes, vocab


def _levels(vocab: dict[str, int]) -> tuple[str, ...]:
    out = [""] * len(vocab)
    for k, i in vocab.items():
        out[i] = k
    return tuple(out)


class VoteTable:
    """Votes as columns. Build with :meth:`from_columns`, :meth:`from_rows` or :func:`read_votes_csv`.

    ``table["annotator"]`` returns decoded values; ``table.factor("annotator")`` the codes.
    """

    def __init__(self, columns: Mapping[str, np.ndarray | Factor], n_rows: int):
        missing = [c for c in VOTE_COLUMNS if c not in columns]
        if missing:
            raise VotesFileError([f"missing column(s): {', '.join(missing)}"])
        self._cols = dict(columns)
        self._n = int(n_rows)

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"<VoteTable {self._n} votes>"

    def has(self, name: str) -> bool:
        return name in self._cols

    def __getitem__(self, name: str) -> np.ndarray:
        col = self._cols[name]
        return col.decode() if isinstance(col, Factor) else col

    def factor(self, name: str) -> Factor:
        col = self._cols[name]
        if not isinstance(col, Factor):
            raise TypeError(f"column {name!r} is not dictionary-coded")
        return col

    def take(self, index: np.ndarray) -> "VoteTable":
        """The rows selected by a boolean mask or an index array, in that order."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        cols = {k: (v.take(index) if isinstance(v, Factor) else v[index]) for k, v in self._cols.items()}
        return VoteTable(cols, len(index))

    def columns_present(self) -> tuple[str, ...]:
        """:data:`VOTE_COLUMNS`, then the optional score columns this table has."""
        return VOTE_COLUMNS + tuple(c for c in SCORE_COLUMNS if c in self._cols)

    def to_rows(self) -> Iterable[list[str]]:
        """Rows of strings in :meth:`columns_present` order (for writing a CSV)."""
        decoded = [self[c] for c in self.columns_present()]
        fmt = lambda v: "" if isinstance(v, float) and v != v else str(v)  # noqa: E731 - NaN: empty
        for i in range(self._n):
            yield [fmt(col[i]) for col in decoded]

    @classmethod
    def from_columns(
        cls, data: Mapping[str, Sequence], *, source: str = "votes", first_line: int = 1, all_text: bool = False
    ) -> "VoteTable":
        """Build and validate a table from ``{column: sequence}``. Ints may be given as strings;
        ``all_text`` promises every value is already a ``str`` (as a CSV reader gives)."""
        texts = (lambda v: v) if all_text else _texts
        missing = [c for c in VOTE_COLUMNS if c not in data]
        if missing:
            raise VotesFileError([f"missing column(s): {', '.join(missing)}"], source=source)
        n = len(data[VOTE_COLUMNS[0]])
        problems = [f"column {c!r} has {len(data[c])} values, expected {n}" for c in VOTE_COLUMNS if len(data[c]) != n]
        if problems:
            raise VotesFileError(problems, source=source)
        cols: dict[str, np.ndarray | Factor] = {}
        obj_vocab: dict[str, int] = {}
        for c in OBJECTIVE_COLUMNS:
            codes, obj_vocab = _factorize(texts(data[c]), obj_vocab)
            cols[c] = codes
        obj_levels = _levels(obj_vocab)
        for c in OBJECTIVE_COLUMNS:
            cols[c] = Factor(cols[c], obj_levels)
        for c in FACTOR_COLUMNS:
            if c in OBJECTIVE_COLUMNS:
                continue
            codes, vocab = _factorize(texts(data[c]))
            cols[c] = Factor(codes, _levels(vocab))
        for c in RAW_COLUMNS:
            cols[c] = np.asarray(texts(data[c]), dtype=object)
        for c in INT_COLUMNS:
            cols[c] = _parse_ints(c, data[c], problems, first_line)
        for c in SCORE_COLUMNS:
            if c in data:
                cols[c] = _parse_floats(c, data[c], problems, first_line)
        table = cls(cols, n)
        problems.extend(validate(table, first_line=first_line))
        if problems:
            raise VotesFileError(_sort_problems(problems), source=source)
        return table

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, object]], *, source: str = "votes") -> "VoteTable":
        rows = list(rows)
        problems = []
        for i, r in enumerate(rows):
            miss = [c for c in VOTE_COLUMNS if c not in r]
            if miss:
                problems.append(f"row {i + 1}: missing {', '.join(miss)}")
        if problems:
            raise VotesFileError(problems, source=source)
        data = {c: [r[c] for r in rows] for c in VOTE_COLUMNS}
        data.update({c: [r.get(c) for r in rows] for c in SCORE_COLUMNS if rows and c in rows[0]})
        return cls.from_columns(data, source=source)


def _text(v: object) -> str:
    return "" if v is None else str(v)


def _texts(values: Sequence) -> Sequence[str]:
    """``values`` as strings (None as empty); a no-op for what a CSV reader gives."""
    if all(type(v) is str for v in values):
        return values
    return [_text(v) for v in values]


def _parse_ints(name: str, values: Sequence, problems: list[str], first_line: int) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.int64) if len(values) else np.zeros(0, np.int64)
    except (TypeError, ValueError, OverflowError):
        pass
    out = np.zeros(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        try:
            if isinstance(v, bool):
                raise ValueError
            out[i] = int(v)
        except (TypeError, ValueError, OverflowError):
            problems.append(f"line {i + first_line}: {name} must be an integer, got {v!r}")
    return out


def _parse_floats(name: str, values: Sequence, problems: list[str], first_line: int) -> np.ndarray:
    """Optional numbers: empty (or None) is NaN; anything else must be a finite number."""
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if v is None or v == "":
            continue
        try:
            if isinstance(v, bool):
                raise ValueError
            x = float(v)
        except (TypeError, ValueError):
            x = float("nan")
        if not np.isfinite(x):
            problems.append(f"line {i + first_line}: {name} must be a number or empty, got {v!r}")
            continue
        out[i] = x
    return out


def _sort_problems(problems: list[str]) -> list[str]:
    def key(p: str) -> tuple[int, str]:
        if p.startswith("line "):
            head = p[5:].split(":", 1)[0]
            if head.isdigit():
                return int(head), p
        return -1, p

    return sorted(problems, key=key)


def _lines(mask: np.ndarray, first_line: int, limit: int = 5) -> str:
    idx = np.flatnonzero(mask)
    shown = ", ".join(str(i + first_line) for i in idx[:limit])
    return shown + (f" and {len(idx) - limit} more" if len(idx) > limit else "")


def validate(table: VoteTable, *, first_line: int = 1) -> list[str]:
    """Every problem with the table's values, as ``line N: reason`` strings (empty when valid).

    ``first_line`` is the line number of row 0 (2 for a CSV file with a header line).
    """
    problems: list[str] = []

    def bad_values(col: str, allowed: Sequence[str], where: np.ndarray | None = None) -> None:
        f = table.factor(col)
        ok = f.is_in(allowed)
        bad = ~ok if where is None else (~ok & where)
        for i in np.flatnonzero(bad)[:_MAX_PROBLEMS]:
            problems.append(
                f"line {i + first_line}: {col} {f.levels[f.codes[i]]!r} must be one of {', '.join(allowed) or '(empty)'}"
            )

    bad_values("trial_kind", TRIAL_KINDS)
    bad_values("criterion", CRITERIA)
    bad_values("choice", CHOICES)
    kind = table.factor("trial_kind")
    regular = kind.codes == kind.code_of("regular")
    attention = kind.codes == kind.code_of("attention")
    bad_values("expected", SIDES, where=attention & ~table.factor("expected").is_in(("",)))
    bad_values("expected", ("",), where=regular)
    for col, where in (("annotator", regular | attention), ("item_id", regular), ("prompt_id", regular)):
        empty = table.factor(col).is_in(("",)) & where
        if empty.any():
            problems.append(f"line(s) {_lines(empty, first_line)}: {col} is empty")
    if not regular.any():
        return problems

    a, b = table.factor("objective_a"), table.factor("objective_b")
    left, right, winner = table.factor("left_objective"), table.factor("right_objective"), table.factor("winner")
    empty_code = a.code_of("")
    tie_code = a.code_of(TIE)
    choice = table.factor("choice")
    ch_left, ch_right, ch_tie = (choice.codes == choice.code_of(s) for s in CHOICES)

    def report(mask: np.ndarray, reason: str) -> None:
        mask = mask & regular
        for i in np.flatnonzero(mask)[:_MAX_PROBLEMS]:
            problems.append(f"line {i + first_line}: {reason(i) if callable(reason) else reason}")

    report((a.codes == empty_code) | (b.codes == empty_code), "regular vote without objective_a/objective_b")
    report((a.codes == b.codes), "objective_a and objective_b are the same")
    report((a.codes == tie_code) | (b.codes == tie_code), "an objective may not be called 'tie'")
    same_pair = ((left.codes == a.codes) & (right.codes == b.codes)) | ((left.codes == b.codes) & (right.codes == a.codes))
    lv = a.levels
    report(
        ~same_pair,
        lambda i: f"left/right objectives {lv[left.codes[i]]!r}/{lv[right.codes[i]]!r} are not the item's pair "
        f"{lv[a.codes[i]]!r}/{lv[b.codes[i]]!r}",
    )
    expected = np.where(ch_left, left.codes, np.where(ch_right, right.codes, tie_code if tie_code >= 0 else -2))
    mismatch = (ch_left | ch_right | ch_tie) & same_pair & (winner.codes != expected)
    report(
        mismatch,
        lambda i: f"winner {lv[winner.codes[i]]!r} does not follow from choice {choice.levels[choice.codes[i]]!r}",
    )
    return problems


def read_votes_csv(path_or_file: str | os.PathLike | IO[str]) -> VoteTable:
    """Read an exported votes CSV (header line with :data:`VOTE_COLUMNS`; extra columns are ignored).

    Raises
    ------
    VotesFileError
        Listing missing columns, or each bad value with its line number.
    """
    # Millions of small lists and tuples: the cyclic GC would rescan them again and again (it
    # roughly doubles the reading time); none of them can form a cycle.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        if isinstance(path_or_file, (str, os.PathLike)):
            source = os.fspath(path_or_file)
            with open(path_or_file, newline="", encoding="utf-8-sig") as fh:
                return _read(fh, source)
        return _read(path_or_file, getattr(path_or_file, "name", "votes"))
    finally:
        if was_enabled:
            gc.enable()


def _read(fh: IO[str], source: str) -> VoteTable:
    reader = csv.reader(fh)
    try:
        header = next(reader)
    except StopIteration:
        raise VotesFileError(["the file is empty (no header line)"], source=source) from None
    header = [h.strip() for h in header]
    missing = [c for c in VOTE_COLUMNS if c not in header]
    if missing:
        raise VotesFileError([f"line 1: missing column(s): {', '.join(missing)}"], source=source)
    pos = [header.index(c) for c in VOTE_COLUMNS]
    width = len(header)
    rows = list(reader)
    problems = [
        f"line {i + 2}: empty line" if not row else f"line {i + 2}: {len(row)} fields, expected {width}"
        for i, row in enumerate(rows)
        if len(row) != width
    ]
    if problems:
        raise VotesFileError(problems, source=source)
    columns = list(zip(*rows)) if rows else [()] * width
    # Exported cells that a spreadsheet would run carry a leading quote (studyapp.stats.csvsafe);
    # only free text and pseudonyms can start with one (the other columns are numbers, times and
    # fixed names, which the writer never quotes).
    data = {c: unescape_column(columns[p]) if c in TEXT_COLUMNS else columns[p] for c, p in zip(VOTE_COLUMNS, pos)}
    data.update({c: columns[header.index(c)] for c in SCORE_COLUMNS if c in header})
    return VoteTable.from_columns(data, source=source, first_line=2, all_text=True)


def write_votes_csv(table: VoteTable, path_or_file: str | os.PathLike | IO[str]) -> None:
    """Write ``table`` as a votes CSV (the inverse of :func:`read_votes_csv`)."""
    if isinstance(path_or_file, (str, os.PathLike)):
        with open(path_or_file, "w", newline="", encoding="utf-8") as fh:
            write_votes_csv(table, fh)
        return
    w = csv.writer(path_or_file, lineterminator="\n")
    columns = table.columns_present()
    w.writerow(columns)
    text = [c in TEXT_COLUMNS for c in columns]
    w.writerows([escape(v) if t else v for v, t in zip(row, text)] for row in table.to_rows())


def votes_csv_text(table: VoteTable) -> str:
    buf = io.StringIO()
    write_votes_csv(table, buf)
    return buf.getvalue()
