"""A round's export: the votes CSV, the analysis settings, the summary (JSON and CSV) and the figure
(SVG and PNG), all computed by ``studyapp.stats`` from the exported votes file itself.

The summary is produced exactly as ``python -m studyapp.stats votes.csv --settings settings.json``
produces it (the same function, on the same bytes), so anyone holding the two files recomputes
every number of ``summary.json`` without the database (DESIGN invariant 6).

``votes.csv`` holds the columns of ``studyapp.stats.VOTE_COLUMNS`` in that order, then the render
scores of ``studyapp.stats.SCORE_COLUMNS`` (empty where a render has none), then QC columns
the stats reader ignores: ``qc_annotator_status`` (the platform's live screening of the
annotator), ``qc_annotator_excluded`` / ``qc_annotator_reasons`` (the declared annotator rules, as
``stats.annotator_qc`` applies them) and ``qc_vote_kept`` (regular votes: whether the vote enters
the "declared" results; empty for attention and practice rows). Cells a spreadsheet would run as
a formula are written with a leading quote (``studyapp.stats.csvsafe``), undone by the reader.

The bundle is cached per round and content key (vote count, last vote id, annotator QC statuses,
analysis settings), so the round page and its downloads cost one analysis per new vote.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from django.core.cache import cache
from django.db.models import Count, Max

from studyapp import stats
from studyapp.models import Annotator, StudyRound, Vote
from studyapp.selectors_results import round_analysis_settings, round_vote_rows
from studyapp.stats.__main__ import run as run_stats_on_file
from studyapp.stats.csvsafe import escape as csv_cell_escape
from studyapp.stats.table import TEXT_COLUMNS

QC_COLUMNS = ("qc_annotator_status", "qc_annotator_excluded", "qc_annotator_reasons", "qc_vote_kept")
# The stats module's columns, then the render scores it reads when present (optional there).
DATA_COLUMNS = tuple(stats.VOTE_COLUMNS) + tuple(stats.SCORE_COLUMNS)
VOTES_CSV_COLUMNS = DATA_COLUMNS + QC_COLUMNS
FILE_NAMES = ("votes.csv", "settings.json", "summary.json", "summary.csv", "figure.svg", "figure.png")
CONTENT_TYPES = {
    "votes.csv": "text/csv; charset=utf-8",
    "settings.json": "application/json",
    "summary.json": "application/json",
    "summary.csv": "text/csv; charset=utf-8",
    "figure.svg": "image/svg+xml",
    "figure.png": "image/png",
}
CACHE_SECONDS = 24 * 3600


class ExportError(Exception):
    """The round's votes or settings cannot be analysed; the message says what is wrong."""


@dataclass
class RoundExport:
    """Everything a round's export holds; ``files`` maps each FILE_NAMES entry to its bytes."""

    round_id: int
    n_votes: int
    settings: dict
    summary: dict
    annotators: list[dict]
    files: dict[str, bytes] = field(repr=False)

    def zip_bytes(self) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name in FILE_NAMES:
                info = zipfile.ZipInfo(f"round-{self.round_id}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, self.files[name])
        return buf.getvalue()


def analysis_settings(rnd: StudyRound) -> stats.AnalysisSettings:
    """The round's analysis settings as the stats module's value (frozen at opening, or declared)."""
    try:
        return stats.AnalysisSettings.from_dict(round_analysis_settings(rnd))
    except stats.SettingsError as exc:
        raise ExportError(f"round #{rnd.pk}: its analysis settings are not usable: {exc}") from None


def _csv_value(v):
    """None (a score not recorded) as an empty field; floats in full precision."""
    if v is None:
        return ""
    return repr(v) if isinstance(v, float) else v


def _csv_cell(column: str, value):
    """Text cells spreadsheet-safe, reversibly: the stats reader undoes it (studyapp.stats.csvsafe)."""
    return csv_cell_escape(value) if column in TEXT_COLUMNS else value


def votes_csv_bytes(rows: list[dict], table: stats.VoteTable, settings: stats.AnalysisSettings, qc_status: dict) -> bytes:
    """The votes CSV: VOTE_COLUMNS, then the QC columns (see the module docstring)."""
    keep, _ = stats.declared_mask(table, settings)
    by_annotator = {r["annotator"]: r for r in stats.annotator_qc(table, settings)}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(VOTES_CSV_COLUMNS)
    for i, row in enumerate(rows):
        qc = by_annotator.get(row["annotator"])
        w.writerow(
            [_csv_cell(c, _csv_value(row.get(c))) for c in DATA_COLUMNS]
            + [
                qc_status.get(row["annotator"], ""),
                ("true" if qc["excluded"] else "false") if qc else "",
                csv_cell_escape(";".join(qc["reasons"])) if qc else "",
                ("true" if keep[i] else "false") if row["trial_kind"] == "regular" else "",
            ]
        )
    return buf.getvalue().encode("utf-8")


def build_export(rnd: StudyRound) -> RoundExport:
    """Read the round's votes, write them as CSV, and analyse that file with ``studyapp.stats``."""
    settings = analysis_settings(rnd)
    rows = list(round_vote_rows(rnd))
    try:
        table = stats.VoteTable.from_rows(rows, source=f"round #{rnd.pk} votes")
    except stats.VotesFileError as exc:
        raise ExportError(str(exc)) from None
    qc_status = dict(Annotator.objects.filter(round=rnd).values_list("pseudonym", "qc_status"))
    files = {"votes.csv": votes_csv_bytes(rows, table, settings, qc_status)}
    settings_dict = settings.to_dict()
    files["settings.json"] = (json.dumps(settings_dict, indent=2) + "\n").encode("utf-8")
    with tempfile.TemporaryDirectory(prefix="studyapp-export-") as tmp:
        votes_path = Path(tmp) / "votes.csv"
        votes_path.write_bytes(files["votes.csv"])
        summary = run_stats_on_file(str(votes_path), settings=settings)
        files["summary.json"] = stats.summary_json_text(summary).encode("utf-8")
        summary_csv = io.StringIO()
        stats.write_summary_csv(summary, summary_csv)
        files["summary.csv"] = summary_csv.getvalue().encode("utf-8")
        for path in stats.write_figure(summary, tmp):
            files[Path(path).name] = Path(path).read_bytes()
    return RoundExport(
        round_id=rnd.pk,
        n_votes=len(rows),
        settings=settings_dict,
        summary=summary,
        annotators=stats.annotator_qc(table, settings),
        files=files,
    )


def _cache_key(rnd: StudyRound) -> str:
    votes = Vote.objects.filter(trial__annotator__round=rnd).aggregate(n=Count("id"), last=Max("id"))
    qc = list(Annotator.objects.filter(round=rnd).exclude(qc_status=Annotator.QC.PENDING).order_by("id").values_list("id", "qc_status"))
    settings = json.dumps(round_analysis_settings(rnd), sort_keys=True)
    digest = hashlib.sha256(f"{votes['n']}:{votes['last']}:{qc}:{settings}".encode()).hexdigest()[:32]
    return f"studyapp:round-export:{rnd.pk}:{digest}"


def round_export(rnd: StudyRound, *, use_cache: bool = True) -> RoundExport:
    """The round's export bundle, from the cache when nothing it depends on has changed."""
    if not use_cache:
        return build_export(rnd)
    key = _cache_key(rnd)
    export = cache.get(key)
    if export is None:
        export = build_export(rnd)
        cache.set(key, export, CACHE_SECONDS)
    return export


def write_export(export: RoundExport, out_dir: Path) -> list[Path]:
    """Write the bundle's files into ``out_dir``; returns their paths."""
    paths = []
    for name in FILE_NAMES:
        path = Path(out_dir) / name
        path.write_bytes(export.files[name])
        paths.append(path)
    return paths
