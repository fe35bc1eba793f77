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

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
TOYWORLD_PROMPTS = Path(__file__).resolve().parents[2] / "generation" / "toyworld" / "toyworld_prompts.tsv"

# Accepted header names per field; the first column whose header matches wins.
TEXT_COLUMNS = ("prompt", "text", "caption", "prompts")
CATEGORY_COLUMNS = ("category",)
ID_COLUMNS = ("external_id", "id", "coco_image_id", "prompt_id")
MAX_PROMPT_CHARS = 1000


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


def parse_prompt_file(data: bytes, *, filename: str = "file") -> list[ParsedPrompt]:
    """Parse a UTF-8 TSV or CSV file with a header line; raise ImportFileError listing every problem.

    The delimiter is a tab when the header line has one, else a comma. Columns: a prompt column
    (``prompt``/``text``/``caption``), optional ``category`` and ``external_id``/``id``.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportFileError([f"line {line}: not UTF-8 text (byte {exc.start}); save the file as UTF-8"], what=filename)
    if not text.strip():
        raise ImportFileError(["line 1: the file is empty; expected a header line such as 'prompt<TAB>category'"], what=filename)
    header_line = text.splitlines()[0]
    delimiter = "\t" if "\t" in header_line else ","
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    header = [h.strip().lower() for h in rows[0]]

    def find(names: tuple[str, ...]) -> int | None:
        for name in names:
            if name in header:
                return header.index(name)
        return None

    text_col, cat_col, id_col = find(TEXT_COLUMNS), find(CATEGORY_COLUMNS), find(ID_COLUMNS)
    if text_col is None:
        raise ImportFileError(
            [f"line 1: no prompt column in header {rows[0]!r}; name one column 'prompt' (or 'text'/'caption')"],
            what=filename,
        )
    problems: list[str] = []
    out: list[ParsedPrompt] = []
    seen_text: dict[str, int] = {}
    seen_id: dict[str, int] = {}
    for lineno, row in enumerate(rows[1:], start=2):
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
        raise ImportFileError(problems, what=filename)
    return out


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
