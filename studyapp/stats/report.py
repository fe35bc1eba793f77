"""Summary files: summary.json, summary.csv, annotators.csv and the Figure 3-style preference plot."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from typing import IO, Any

from studyapp.stats.csvsafe import escape

SUMMARY_CSV_COLUMNS = (
    "subset",
    "section",
    "comparison",
    "baseline",
    "criterion",
    "objective",
    "wins",
    "losses",
    "ties",
    "n",
    "tie_rate",
    "rate",
    "rate_excl_ties",
    "rate_ties_half",
    "ci_low",
    "ci_high",
    "ci_exact_low",
    "ci_exact_high",
    "ci_wilson_low",
    "ci_wilson_high",
    "ci_bootstrap_prompt_low",
    "ci_bootstrap_prompt_high",
    "ci_bootstrap_annotator_low",
    "ci_bootstrap_annotator_high",
    "p_value",
    "p_holm",
    "significant",
    "verdict",
    "primary_method",
    "primary_estimate",
    "primary_ci_low",
    "primary_ci_high",
    "design_effect",
    "fragility",
    "p_binomial",
    "p_binomial_holm",
    "monitoring_status",
    "monitoring_next_look_votes",
    "strength",
    "rank",
)

FIGURE_LABELS = {"realism": "Photo-realism", "alignment": "Text alignment"}


def summary_json_text(summary: dict[str, Any]) -> str:
    """The canonical JSON text of a summary (what ``summary.json`` holds)."""
    return json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v) if isinstance(v, float) else str(v)


def summary_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per subset x (preference cell | Bradley-Terry objective), keys in SUMMARY_CSV_COLUMNS."""
    rows = []
    for subset, res in summary["results"].items():
        for c in res["preference"]:
            rows.append(
                {
                    "subset": subset,
                    "section": "preference",
                    "comparison": c["comparison"],
                    "baseline": c["baseline"],
                    "criterion": c["criterion"],
                    "objective": c["focal"],
                    **{k: c[k] for k in ("wins", "losses", "ties", "n", "tie_rate", "rate")},
                    **{k: c[k] for k in ("rate_excl_ties", "rate_ties_half", "p_value", "p_holm", "significant")},
                    **{k: c[k] for k in ("verdict", "fragility", "p_binomial", "p_binomial_holm")},
                    "primary_method": c["primary"]["method"],
                    "primary_estimate": c["primary"]["estimate"],
                    "primary_ci_low": c["primary"]["ci"][0],
                    "primary_ci_high": c["primary"]["ci"][1],
                    "design_effect": c["primary"]["design_effect"],
                    "monitoring_status": (c["monitoring"] or {}).get("status"),
                    "monitoring_next_look_votes": (c["monitoring"] or {}).get("next_look_votes"),
                    "ci_low": c["ci"][0],
                    "ci_high": c["ci"][1],
                    **{
                        f"{name}_{end}": c[name][i]
                        for name in ("ci_exact", "ci_wilson", "ci_bootstrap_prompt", "ci_bootstrap_annotator")
                        for i, end in enumerate(("low", "high"))
                    },
                }
            )
        for crit, bt in res["bradley_terry"].items():
            for o in bt["objectives"]:
                rows.append(
                    {
                        "subset": subset,
                        "section": "bradley_terry",
                        "criterion": crit,
                        "objective": o["objective"],
                        "strength": o["strength"],
                        "rank": o["rank"],
                        "ci_low": o["ci"][0],
                        "ci_high": o["ci"][1],
                    }
                )
    return rows


def write_summary_csv(summary: dict[str, Any], path_or_file: str | os.PathLike | IO[str]) -> None:
    """Write the summary's preference cells and Bradley-Terry strengths as a flat CSV."""
    if isinstance(path_or_file, (str, os.PathLike)):
        with open(path_or_file, "w", newline="", encoding="utf-8") as fh:
            write_summary_csv(summary, fh)
        return
    w = csv.writer(path_or_file, lineterminator="\n")
    w.writerow(SUMMARY_CSV_COLUMNS)
    for row in summary_rows(summary):
        w.writerow([escape(_fmt(row.get(c))) for c in SUMMARY_CSV_COLUMNS])


def write_annotators_csv(records: Sequence[dict[str, Any]], path_or_file: str | os.PathLike | IO[str]) -> None:
    """Write :func:`annotator_qc` records as CSV (reasons joined with ';')."""
    if isinstance(path_or_file, (str, os.PathLike)):
        with open(path_or_file, "w", newline="", encoding="utf-8") as fh:
            write_annotators_csv(records, fh)
        return
    w = csv.writer(path_or_file, lineterminator="\n")
    cols = list(records[0]) if records else ["annotator"]
    w.writerow(cols)
    for r in records:
        w.writerow([escape(";".join(r[c]) if c == "reasons" else _fmt(r[c])) for c in cols])


def _figure_bar(cell: dict[str, Any], which: str) -> tuple[float | None, float | None, float | None]:
    """The bar's value and interval. "primary": the clustered model's side-balanced preference
    and its interval (the rate and Wilson interval where the model gave none); else the headline
    rate with the named interval."""
    if which == "primary":
        prim = cell.get("primary") or {}
        if prim.get("estimate") is not None and None not in prim.get("ci", [None]):
            return prim["estimate"], prim["ci"][0], prim["ci"][1]
        which = "wilson"
    key = {"wilson": "ci", "bootstrap_prompt": "ci_bootstrap_prompt", "bootstrap_annotator": "ci_bootstrap_annotator"}
    lo, hi = cell[key[which]]
    return cell["rate"], lo, hi


def _error_bar(value, lo, hi) -> tuple[float, float]:
    """Non-negative error-bar lengths (percent); an interval not containing its value (rounding)
    is widened to contain it, never drawn as a negative error."""
    if value is None:
        return 0.0, 0.0
    lo = value if lo is None else min(max(lo, 0.0), value)
    hi = value if hi is None else max(min(hi, 1.0), value)
    return 100 * (value - lo), 100 * (hi - value)


def draw_figure(summary: dict[str, Any], *, subset: str = "declared"):
    """Figure 3 of Kong & Kwak: preference for the focal objective against each baseline, grouped
    bars for photo-realism and alignment, 95% intervals, a dashed 50% line. Returns the Figure."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    settings = summary["settings"]
    cells = summary["results"][subset]["preference"]
    baselines, criteria = settings["baselines"], settings["criteria"]
    fig = Figure(figsize=(1.6 + 1.5 * len(baselines), 3.4), dpi=150)
    ax = fig.subplots()
    width = 0.8 / len(criteria)
    colors = ("#4C72B0", "#DD8452", "#55A868", "#C44E52")
    for ci, crit in enumerate(criteria):
        xs, ys, err_lo, err_hi = [], [], [], []
        for bi, base in enumerate(baselines):
            cell = next(c for c in cells if c["baseline"] == base and c["criterion"] == crit)
            value, lo, hi = _figure_bar(cell, settings.get("figure_interval", "wilson"))
            x = bi - 0.4 + width * (ci + 0.5)
            xs.append(x)
            ys.append(100 * value if value is not None else 0.0)
            e_lo, e_hi = _error_bar(value, lo, hi)
            err_lo.append(e_lo)
            err_hi.append(e_hi)
        ax.bar(
            xs,
            ys,
            width * 0.92,
            yerr=[err_lo, err_hi],
            capsize=3,
            color=colors[ci % len(colors)],
            label=FIGURE_LABELS.get(crit, crit),
            error_kw={"elinewidth": 1},
        )
    ax.axhline(50, color="black", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(baselines)))
    ax.set_xticklabels([f"vs {b}" for b in baselines])
    ax.set_ylim(0, 100)
    ax.set_ylabel(f"Preference for {settings['focal']} (%)")
    rule = "ties excluded" if settings["tie_rule"] == "exclude" else "ties as half"
    level = round(100 * settings["confidence"])
    what = "clustered model" if settings.get("figure_interval") == "primary" else settings.get("figure_interval")
    ax.set_title(f"{subset} votes, {rule}, {level}% CI ({what})", fontsize=8)
    ax.legend(fontsize=8, loc="upper right", frameon=False)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return fig


def _placeholder_figure(reason: str):
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 1.2), dpi=150)
    fig.text(0.5, 0.5, f"Figure not drawn: {reason[:150]}\n(the numbers are in summary.json / summary.csv)",
             ha="center", va="center", fontsize=8, wrap=True)
    return fig


def safe_figure(summary: dict[str, Any], *, subset: str = "declared"):
    """``draw_figure``, or a figure that says why it could not be drawn: a figure must never take
    down the page or export that holds it (issue 11, item 2)."""
    try:
        return draw_figure(summary, subset=subset)
    except Exception as exc:  # noqa: BLE001 - any drawing failure becomes a visible note
        return _placeholder_figure(f"{type(exc).__name__}: {exc}")


def write_figure(summary: dict[str, Any], out_dir: str | os.PathLike, *, subset: str = "declared") -> list[str]:
    """Write figure.svg and figure.png into ``out_dir`` (byte-stable: no dates, fixed SVG ids).
    A drawing failure writes a figure naming the failure instead of raising."""
    import matplotlib

    fig = safe_figure(summary, subset=subset)
    paths = []
    with matplotlib.rc_context({"svg.hashsalt": "studyapp-stats", "svg.fonttype": "none"}):
        for ext, meta in (("svg", {"Date": None}), ("png", {"Software": None})):
            path = os.path.join(os.fspath(out_dir), f"figure.{ext}")
            try:
                fig.savefig(path, format=ext, metadata=meta)
            except OSError:
                raise
            except Exception as exc:  # noqa: BLE001 - drawing errors surface at savefig too
                fig = _placeholder_figure(f"{type(exc).__name__}: {exc}")
                fig.savefig(path, format=ext, metadata=meta)
            paths.append(path)
    return paths


def csv_text(summary: dict[str, Any]) -> str:
    buf = io.StringIO()
    write_summary_csv(summary, buf)
    return buf.getvalue()
