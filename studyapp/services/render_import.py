"""Import renders made elsewhere: a folder of images and ``manifest.tsv`` -> a ready round.

``manifest.tsv`` (UTF-8, tab-separated, header line) has the columns ``prompt`` (the prompt's
text or its external id), ``seed`` (index 0 .. seeds_per_prompt-1), ``objective`` and ``file``
(a path relative to the folder). One row per render of the round, no more, no less.

All or nothing: every problem is listed with its line number before anything is written; files
are copied (re-encoded as PNG without metadata, under opaque names) only after validation, and
deleted again if the database update fails.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction
from django.utils import timezone
from PIL import Image, UnidentifiedImageError

from studyapp.exceptions import ImportFileError, TransitionError
from studyapp.models import Render, StudyRound
from studyapp.services.files import TooLarge, iter_chunks, read_at_most
from studyapp.services.renders import RenderError
from studyapp.services.rounds import round_transition
from studyapp.storage import png_reencoded, render_file_delete, render_file_write

MANIFEST = "manifest.tsv"
COLUMNS = ("prompt", "seed", "objective", "file")
# Decompression-bomb guard: no study image needs more pixels than this.
MAX_PIXELS = 4096 * 4096
# A 4096x4096 RGBA PNG without compression is 64 MiB; a bigger file is not a study image.
MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_MANIFEST_BYTES = 16 * 1024 * 1024

Status = StudyRound.Status


@dataclass(frozen=True)
class ManifestRow:
    line: int
    render_id: int
    path: Path
    file: str
    size: tuple[int, int]
    sha256: str


@dataclass(frozen=True)
class ImportResult:
    round_id: int
    imported: int
    size: tuple[int, int]


def _file_sha256(path: Path, limit: int) -> str:
    """SHA-256 of a file read in chunks; refuses it once it passes ``limit`` bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        try:
            for chunk in iter_chunks(f, limit):
                digest.update(chunk)
        except TooLarge:
            raise ValueError(f"larger than the {limit:,} bytes an image file may be") from None
    return digest.hexdigest()


def _read_image(path: Path) -> tuple[tuple[int, int], str]:
    """(size, sha256) of a decodable image file; raises ValueError with a readable reason.

    The file is never read whole into memory: its size is checked first, the hash is computed
    in chunks, and Pillow decodes from the open file (after checking the pixel count)."""
    size_bytes = path.stat().st_size
    if size_bytes > MAX_IMAGE_BYTES:
        raise ValueError(f"{size_bytes:,} bytes, larger than the {MAX_IMAGE_BYTES:,} bytes an image file may be")
    digest = _file_sha256(path, MAX_IMAGE_BYTES)
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ValueError(f"{img.width}x{img.height} is larger than the {MAX_PIXELS} pixels allowed")
            img.load()
            size = img.size
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a readable image ({type(exc).__name__}: {exc})") from None
    return size, digest


def manifest_validate(rnd: StudyRound, directory: Path) -> list[ManifestRow]:
    """Check ``directory/manifest.tsv`` against the round; raise ImportFileError listing every problem."""
    what = f"{directory / MANIFEST}"
    if not directory.is_dir():
        raise ImportFileError([f"{directory} is not a folder"], what="import")
    try:
        with open(directory / MANIFEST, "rb") as f:
            raw = read_at_most(f, MAX_MANIFEST_BYTES)
    except TooLarge:
        raise ImportFileError([f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES:,} bytes; one line per render is far less"], what=what) from None
    except OSError as exc:
        raise ImportFileError(
            [f"cannot read {MANIFEST} in {directory} ({exc.strerror}); it needs the columns {', '.join(COLUMNS)}"],
            what=what,
        ) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ImportFileError([f"line {line}: not UTF-8 text; save the manifest as UTF-8"], what=what) from None
    reader = csv.reader(io.StringIO(text.replace("\x00", "\ufffd"), newline=""), delimiter="\t")
    try:
        rows = list(reader)
    except csv.Error as exc:  # a field over the csv module's size limit, a stray line end
        raise ImportFileError([f"line {reader.line_num + 1}: cannot be read ({exc})"], what=what) from None
    if not rows:
        raise ImportFileError([f"line 1: empty file; expected the header {chr(9).join(COLUMNS)}"], what=what)
    header = [h.strip().lower() for h in rows[0]]
    missing_cols = [c for c in COLUMNS if c not in header]
    if missing_cols:
        raise ImportFileError(
            [f"line 1: missing column(s) {', '.join(missing_cols)} in header {rows[0]!r}; "
             f"the header is {chr(9).join(COLUMNS)} (tab-separated)"],
            what=what,
        )
    col = {c: header.index(c) for c in COLUMNS}

    renders = list(Render.objects.filter(round=rnd).select_related("prompt"))
    by_key = {(r.prompt_id, r.seed, r.objective): r for r in renders}
    prompts = {r.prompt_id: r.prompt for r in renders}
    by_text = {p.text: p for p in prompts.values()}
    by_ext = {p.external_id: p for p in prompts.values() if p.external_id}
    objectives = sorted({r.objective for r in renders})
    seeds = sorted({r.seed for r in renders})
    root = directory.resolve()
    if not renders:
        raise ImportFileError([f"round #{rnd.pk} has no renders to import into"], what=what)

    problems: list[str] = []
    seen: dict[int, int] = {}
    good: list[tuple[int, int, str, Path, tuple[int, int], str]] = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            problems.append(f"line {lineno}: {len(row)} column(s), the header has {len(header)}")
            continue
        ptext, seed_s, objective, file = (row[col[c]].strip() for c in COLUMNS)
        line_problems = []
        prompt = by_ext.get(ptext) or by_text.get(ptext)
        if prompt is None:
            line_problems.append(f"unknown prompt {ptext[:80]!r} (not the text or id of a prompt of this round)")
        try:
            seed = int(seed_s)
            if seed not in seeds:
                line_problems.append(f"seed {seed} is not a seed of this round (seeds are {seeds[0]}..{seeds[-1]})")
        except ValueError:
            seed = None
            line_problems.append(f"seed {seed_s!r} is not an integer")
        objective = objective.upper()
        if objective not in objectives:
            line_problems.append(f"unknown objective {objective!r} (this round has {', '.join(objectives)})")
        path = None
        if not file:
            line_problems.append("empty file column")
        elif os.path.isabs(file):
            line_problems.append(f"file {file!r} is an absolute path; give it relative to {directory}")
        else:
            candidate = (directory / file).resolve()
            if not candidate.is_relative_to(root):
                line_problems.append(f"file {file!r} is outside {directory}")
            elif not candidate.is_file():
                line_problems.append(f"file {file!r} not found in {directory}")
            else:
                path = candidate
        render = None
        if prompt is not None and seed in seeds and objective in objectives:
            render = by_key.get((prompt.pk, seed, objective))
            if render is None:
                line_problems.append(f"no render of this round for ({ptext[:60]!r}, seed {seed}, {objective})")
            elif render.pk in seen:
                line_problems.append(f"duplicate row: same prompt, seed and objective as line {seen[render.pk]}")
            else:
                seen[render.pk] = lineno
        size = digest = None
        if path is not None:
            try:
                size, digest = _read_image(path)
            except (ValueError, OSError) as exc:
                line_problems.append(f"file {file!r}: {exc}")
        if line_problems:
            problems.extend(f"line {lineno}: {p}" for p in line_problems)
            continue
        good.append((lineno, render.pk, file, path, size, digest))

    if good:
        sizes = Counter(g[4] for g in good)
        (common, _), = sizes.most_common(1)
        first_line = next(g[0] for g in good if g[4] == common)
        for lineno, _rid, file, _p, size, _d in good:
            if size != common:
                problems.append(
                    f"line {lineno}: file {file!r} is {size[0]}x{size[1]}, but line {first_line}'s is "
                    f"{common[0]}x{common[1]} (all images of a round must share one size)"
                )
    # A row with problems still counts for its render when it names one: no double reports.
    for r in sorted(renders, key=lambda r: (r.prompt.position, r.seed, r.objective)):
        if r.pk not in seen:
            label = r.prompt.external_id or r.prompt.text[:60]
            problems.append(f"missing row for prompt {label!r}, seed {r.seed}, objective {r.objective}")
    if problems:
        raise ImportFileError(problems, what=what)
    return [ManifestRow(lineno, rid, path, file, size, digest) for lineno, rid, file, path, size, digest in good]


def renders_import(*, round_id: int, directory: str | os.PathLike) -> ImportResult:
    """Import every render of a draft round from ``directory``; the round becomes ``ready``."""
    directory = Path(directory)
    rnd = StudyRound.objects.filter(pk=round_id).first()
    if rnd is None:
        raise RenderError(f"no round with id {round_id}; take the id from the rounds page", code="not_found")
    _check_importable(rnd)
    rows = manifest_validate(rnd, directory)

    written: list[str] = []
    try:
        names = {}
        for row in rows:
            with Image.open(row.path) as img:
                data = png_reencoded(img)
            names[row.render_id] = render_file_write(data)
            written.append(names[row.render_id])
        replaced = _record(rnd.pk, rows, names)
    except BaseException:
        for name in written:
            render_file_delete(name)
        raise
    for name in replaced:
        render_file_delete(name)
    return ImportResult(rnd.pk, len(rows), rows[0].size)


def _check_importable(rnd: StudyRound) -> None:
    if rnd.status != Status.DRAFT:
        hint = " (cancel the render run first)" if rnd.status == Status.RENDERING else ""
        raise TransitionError(f"round #{rnd.pk} is {rnd.status}; renders can be imported into a draft round only{hint}")


@transaction.atomic
def _record(round_id: int, rows: list[ManifestRow], names: dict[int, str]) -> list[str]:
    rnd = StudyRound.objects.select_for_update().get(pk=round_id)
    _check_importable(rnd)  # the status may have changed while the files were copied
    renders = {r.pk: r for r in Render.objects.select_for_update().filter(round=rnd).order_by("pk")}
    if set(renders) != {row.render_id for row in rows}:
        raise ImportFileError(["the round's renders changed during the import; run it again"], what="import")
    now = timezone.now()
    replaced = []
    for row in rows:
        r = renders[row.render_id]
        if r.image.name:
            replaced.append(r.image.name)
        r.status = Render.Status.DONE
        r.image = names[row.render_id]
        r.error = ""
        r.itc_score = r.itm_score = r.cap_score = None
        r.provenance = {
            "source": "import",
            "file": row.file,
            "file_sha256": row.sha256,
            "manifest_line": row.line,
            "size": list(row.size),
            "imported_at": now.isoformat(),
        }
        r.started_at = r.finished_at = now
        r.save(update_fields=["status", "image", "error", "itc_score", "itm_score", "cap_score", "provenance", "started_at", "finished_at"])
    round_transition(round_id=rnd.pk, to=Status.READY)
    return replaced
