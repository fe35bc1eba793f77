"""Spreadsheet-safe CSV cells (CSV/formula injection, OWASP), reversibly.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
as a formula (``=HYPERLINK(...)`` in a prompt, a pseudonym starting with ``-``). The writers put a
single quote in front of such a cell, which spreadsheets show as text, and in front of a cell
that already starts with a quote, so that the mapping can be undone exactly: every escaped cell,
and only those, starts with a quote, and :func:`unescape` drops it. Plain numbers (``-0.25``,
``+3``) are left alone: they cannot run anything and must stay numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "'")
QUOTE = "'"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    # float() also takes "-inf", "-nan" and surrounding blanks; only digits make a plain number.
    return text.strip() == text and (text[1:2].isdigit() or text[1:2] == ".")


def escape(value: object) -> str:
    """The cell text of ``value`` a spreadsheet will not execute."""
    text = "" if value is None else str(value)
    if text.startswith(TRIGGERS) and not (text[0] in "+-" and _is_number(text)):
        return QUOTE + text
    return text


def unescape(text: str) -> str:
    """The inverse of :func:`escape` on the text of a cell."""
    return text[1:] if text.startswith(QUOTE) else text


def unescape_column(values: Sequence[str]) -> Sequence[str]:
    """:func:`unescape` over a column; returns ``values`` itself (no copy) when no cell is
    escaped. Looks at the distinct values only (a set, built at C speed): vote columns repeat
    a few prompts, categories and pseudonyms over many rows."""
    escaped = {v for v in set(values) if v.startswith(QUOTE)}
    if not escaped:
        return values
    plain = {v: v[1:] for v in escaped}
    return [plain.get(v, v) for v in values]
