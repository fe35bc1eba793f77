"""Prompt sets: the shipped DrawBench and COCO sets, and researchers' own TSV/CSV files."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction
from django.utils.text import slugify

from studyapp.exceptions import ImportFileError
from studyapp.models import Prompt, PromptSet
from studyapp.services.files import TooLarge, read_at_most

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
TOYWORLD_PROMPTS = Path(__file__).resolve().parents[2] / "generation" / "toyworld" / "toyworld_prompts.tsv"

# Accepted header names per field; the first column whose header matches wins.
TEXT_COLUMNS = ("prompt", "text", "caption", "prompts")
CATEGORY_COLUMNS = ("category",)
ID_COLUMNS = ("external_id", "id", "coco_image_id", "prompt_id")
MAX_PROMPT_CHARS = 1000
# A line holds a prompt, a category and an id with room to spare; anything longer is junk, and
# is refused before the csv module (which raises on fields over 128 KiB) sees it.
MAX_LINE_CHARS = 4000
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_PROBLEMS = 50


@dataclass(frozen=True)
class BuiltinSet:
    name: str
    title: str
    path: Path
    source: str


BUILTIN_SETS = (
    BuiltinSet(
        "drawbench",
        "DrawBench (Saharia et al. 2022), 200 prompts in 11 categories",
        DATA_DIR / "drawbench.tsv",
        "Imagen's DrawBench (Saharia et al. 2022, arXiv:2205.11487), via mwomick/VaReSynth data/DrawBench.csv "
        "@ 06b6b87. No licence stated; cite Saharia et al. 2022. See studyapp/data/SOURCES.md.",
    ),
    BuiltinSet(
        "coco",
        "COCO 2014 val captions, 1000 (one per image)",
        DATA_DIR / "coco_captions.tsv",
        "COCO annotations (Lin et al. 2014, arXiv:1405.0312), CC BY 4.0; first 1000 rows of mlcommons/inference "
        "text_to_image/coco2014/captions/captions_source.tsv @ 55bebbf. See studyapp/data/SOURCES.md.",
    ),
    BuiltinSet(
        "toyworld",
        "Toy world: shapes, colours, counting, relations, binding, misspellings (26 prompts)",
        TOYWORLD_PROMPTS,
        "The project's toy world grammar (generation/toyworld/captions.py); for rounds on the toy models.",
    ),
)


@dataclass(frozen=True)
class ParsedPrompt:
    text: str
    category: str
    external_id: str


def _scan_lines(text: str) -> list[str]:
    """Problems a CSV reader would crash on or hide: NUL characters and overlong lines."""
    problems: list[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if "\x00" in line:
            problems.append(f"line {lineno}: contains a NUL character (\\0); the file is binary or damaged, save it as UTF-8 text")
        if len(line) > MAX_LINE_CHARS:
            problems.append(
                f"line {lineno}: {len(line)} characters; a line may hold at most {MAX_LINE_CHARS} "
                f"(a prompt at most {MAX_PROMPT_CHARS})"
            )
        if len(problems) >= MAX_PROBLEMS:
            break
    return problems


def _rows(text: str, delimiter: str) -> tuple[list[tuple[int, list[str]]], list[str]]:
    """(first line number, fields) per record. Universal newlines (LF, CRLF or CR alone). A quoted
    field that runs over a line end is refused: prompts are one line, and an unbalanced quote
    would otherwise swallow the lines after it into one field."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[tuple[int, list[str]]] = []
    problems: list[str] = []
    last = 0
    while True:
        first = last + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a field over the csv module's size limit
            problems.append(f"line {first}: cannot be read ({exc})")
            break
        last = reader.line_num
        if any("\n" in field or "\r" in field for field in row):
            problems.append(
                f"line {first}: a quoted field runs on to line {last} (an unbalanced \" quote?); "
                "close the quote or remove it, prompts are one line each"
            )
            continue
        rows.append((first, row))
    return rows, problems


def parse_prompt_file(data: bytes, *, filename: str = "file") -> list[ParsedPrompt]:
    """Parse a UTF-8 TSV or CSV file with a header line; raise ImportFileError listing every problem.

    The delimiter is a tab when the header line has one, else a comma. Columns: a prompt column
    (``prompt``/``text``/``caption``), optional ``category`` and ``external_id``/``id``. Line ends
    may be LF, CRLF or CR. NUL characters, lines over ``MAX_LINE_CHARS`` and quoted fields
    spanning lines are refused with their line numbers.
    """
    if len(data) > MAX_FILE_BYTES:
        raise ImportFileError(
            [f"the file is {len(data):,} bytes; a prompt file may be at most {MAX_FILE_BYTES:,} bytes"], what=filename
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportFileError([f"line {line}: not UTF-8 text (byte {exc.start}); save the file as UTF-8"], what=filename)
    if not text.strip():
        raise ImportFileError(["line 1: the file is empty; expected a header line such as 'prompt<TAB>category'"], what=filename)
    problems = _scan_lines(text)
    if problems:
        raise ImportFileError(problems, what=filename)
    header_line = text.splitlines()[0]
    delimiter = "\t" if "\t" in header_line else ","
    rows, problems = _rows(text, delimiter)
    if not rows or rows[0][0] != 1:
        raise ImportFileError(problems or ["line 1: no header line"], what=filename)
    header = [h.strip().lower() for h in rows[0][1]]

    def find(names: tuple[str, ...]) -> int | None:
        for name in names:
            if name in header:
                return header.index(name)
        return None

    text_col, cat_col, id_col = find(TEXT_COLUMNS), find(CATEGORY_COLUMNS), find(ID_COLUMNS)
    if text_col is None:
        raise ImportFileError(
            [f"line 1: no prompt column in header {rows[0][1]!r}; name one column 'prompt' (or 'text'/'caption')"],
            what=filename,
        )
    out: list[ParsedPrompt] = []
    seen_text: dict[str, int] = {}
    seen_id: dict[str, int] = {}
    for lineno, row in rows[1:]:
        if not row or all(not c.strip() for c in row):
            continue  # blank lines carry nothing
        if len(row) != len(header):
            problems.append(f"line {lineno}: {len(row)} column(s), the header has {len(header)}")
            continue
        prompt = row[text_col].strip()
        category = row[cat_col].strip() if cat_col is not None else ""
        ext = row[id_col].strip() if id_col is not None else ""
        if not prompt:
            problems.append(f"line {lineno}: empty prompt")
            continue
        if len(prompt) > MAX_PROMPT_CHARS:
            problems.append(f"line {lineno}: prompt longer than {MAX_PROMPT_CHARS} characters")
        if len(category) > 80:
            problems.append(f"line {lineno}: category longer than 80 characters")
        if len(ext) > 80:
            problems.append(f"line {lineno}: id longer than 80 characters")
        if prompt in seen_text:
            problems.append(f"line {lineno}: duplicate prompt (same text as line {seen_text[prompt]})")
        seen_text.setdefault(prompt, lineno)
        if ext:
            if ext in seen_id:
                problems.append(f"line {lineno}: duplicate id {ext!r} (also on line {seen_id[ext]})")
            seen_id.setdefault(ext, lineno)
        out.append(ParsedPrompt(prompt, category, ext))
    if not out and not problems:
        problems.append("line 2: no prompts after the header")
    if problems:
        problems.sort(key=_line_number)
        raise ImportFileError(problems, what=filename)
    return out


def _line_number(problem: str) -> int:
    head = problem.split(":", 1)[0]
    return int(head[5:]) if head.startswith("line ") and head[5:].isdigit() else 0


def read_capped(stream, *, what: str = "file", limit: int | None = None) -> bytes:
    """Read a binary stream, refusing it once it passes ``limit`` bytes (never reads more)."""
    limit = MAX_FILE_BYTES if limit is None else limit
    try:
        return read_at_most(stream, limit)
    except TooLarge:
        raise ImportFileError([f"the file is larger than {limit:,} bytes, the most a prompt file may be"], what=what) from None


@transaction.atomic
def prompt_set_import(*, name: str, data: bytes, filename: str = "file", title: str = "", source: str = "", builtin: bool = False) -> PromptSet:
    """Create a prompt set from file bytes. All or nothing: a bad file leaves no trace."""
    slug = slugify(name)
    if not slug or slug != name:
        raise ImportFileError([f"name {name!r}: use lowercase letters, digits and dashes, e.g. {slug or 'my-prompts'!r}"], what="prompt set")
    if PromptSet.objects.filter(name=slug).exists():
        raise ImportFileError([f"name {slug!r}: a prompt set with this name exists; choose another name"], what="prompt set")
    parsed = parse_prompt_file(data, filename=filename)
    return _prompt_set_create(PromptSet, Prompt, parsed, name=slug, title=title or slug,
                              source=source or f"imported from {filename}", builtin=builtin)


def _prompt_set_create(prompt_set_model, prompt_model, parsed: list[ParsedPrompt], **fields):
    """A prompt set and its prompts in file order (the models: current ones, or a migration's)."""
    prompt_set = prompt_set_model.objects.create(**fields)
    prompt_model.objects.bulk_create(
        prompt_model(prompt_set=prompt_set, position=i, text=p.text, category=p.category, external_id=p.external_id)
        for i, p in enumerate(parsed)
    )
    return prompt_set


def builtin_prompt_sets_load(prompt_set_model=PromptSet, prompt_model=Prompt) -> list:
    """Load the shipped prompt sets that are not in the database yet (idempotent).

    Migrations pass their historical models; everything else uses the current ones.
    """
    loaded = []
    for spec in BUILTIN_SETS:
        if prompt_set_model.objects.filter(name=spec.name).exists():
            continue
        parsed = parse_prompt_file(spec.path.read_bytes(), filename=spec.path.name)
        loaded.append(_prompt_set_create(prompt_set_model, prompt_model, parsed,
                                         name=spec.name, title=spec.title, source=spec.source, builtin=True))
    return loaded
