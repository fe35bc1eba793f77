"""Live results on the round page and the export downloads (staff only).

Numbers come from ``studyapp.exports.round_export`` (``studyapp.stats`` on the exported votes
file, cached until a vote arrives), so the page shows exactly what the downloads hold. The full
declared bootstrap is used: the analysis itself takes well under a second at study scale.
"""

from __future__ import annotations

import logging

from studyapp.views.access import staff_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.safestring import mark_safe

from studyapp import exports, stats
from studyapp.models import Annotator, StudyRound
from studyapp.services import auto_close

log = logging.getLogger(__name__)

CRITERION_LABELS = {"realism": "Photo-realism", "alignment": "Text alignment"}
SUBSET_LABELS = {"all": "all votes", "declared": "declared exclusions"}
PLANNER_POWER = 0.8
# Below this distance from 50% the exact planner's search grows without bound; say so instead.
PLANNER_MIN_EFFECT = 0.02


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _ci(pair) -> str:
    lo, hi = pair
    return "—" if lo is None or hi is None else f"{100 * lo:.1f}–{100 * hi:.1f}%"


def _p(x) -> str:
    if x is None:
        return "—"
    return "<0.0001" if x < 1e-4 else f"{x:.4f}"


VERDICT_WORDS = {
    "for": "{focal} preferred",
    "against": "{baseline} preferred",
    "no_difference": "no difference shown",
    "continue": "continue",
    "no_verdict": "no verdict",
}


def verdict_text(cell: dict) -> tuple[str, str]:
    """(headline, detail) for a cell's verdict, in the dashboard's words (docs/statistics.md)."""
    words = VERDICT_WORDS[cell["verdict"]].format(focal=cell["focal"], baseline=cell["baseline"])
    mon = cell.get("monitoring")
    prim = cell["primary"]
    if mon:
        if cell["verdict"] in ("for", "against"):
            return f"decided: {words}", f"at look {mon['decided_at_look']} of {mon['looks']} ({mon['decided_at_votes']} votes)"
        if cell["verdict"] == "no_difference":
            return "decided: no difference shown", f"all {mon['looks']} looks done"
        nxt = mon["next_look_votes"]
        b = mon["next_look_boundary"]
        when = f"next look at {nxt} votes ({max(0, nxt - cell['n'])} to go)" if nxt is not None else ""
        if b is not None and b < 30:
            when += f"; decides if |z| ≥ {b:.2f}"
        return "continue", when
    if cell["verdict"] == "no_verdict":
        return "no verdict", prim["note"] or "no votes"
    return words, "valid if this is the planned size"


def _cell_view(cell: dict) -> dict:
    prim = cell["primary"]
    headline, detail = verdict_text(cell)
    de = prim["design_effect"]
    return {
        "verdict": cell["verdict"],
        "verdict_text": headline,
        "verdict_detail": detail,
        "primary_ci": _ci(prim["ci"]),
        "primary_estimate": _pct(prim["estimate"]),
        "design_effect": "—" if de is None else f"{de:.2f}",
        "fragility": cell["fragility"],
        "p_binomial": _p(cell["p_binomial"]),
        "p_binomial_holm": _p(cell["p_binomial_holm"]),
        "clusters": f"{prim['annotators']} ann. × {prim['prompts']} prompts",
        "wins": cell["wins"],
        "losses": cell["losses"],
        "ties": cell["ties"],
        "n": cell["n"],
        "tie_rate": _pct(cell["tie_rate"]),
        "rate_excl_ties": _pct(cell["rate_excl_ties"]),
        "rate_ties_half": _pct(cell["rate_ties_half"]),
        "ci_wilson": _ci(cell["ci_wilson"]),
        "ci_wilson_ties_half": _ci(cell["ci_wilson_ties_half"]),
        "p_value": _p(cell["p_value"]),
        "p_holm": _p(cell["p_holm"]),
        "significant": cell["significant"],
        "ci_bootstrap_prompt": _ci(cell["ci_bootstrap_prompt"]),
        "ci_bootstrap_annotator": _ci(cell["ci_bootstrap_annotator"]),
        "left_rate": _pct(cell["position"]["left_rate"]),
        "left_p": _p(cell["position"]["left_p"]),
    }


def preference_tables(summary: dict) -> list[dict]:
    """One table per criterion: a row per (baseline, subset)."""
    settings = summary["settings"]
    results = summary["results"]
    tables = []
    for crit in settings["criteria"]:
        rows = []
        for base in settings["baselines"]:
            for subset in ("all", "declared"):
                cell = next(c for c in results[subset]["preference"] if c["baseline"] == base and c["criterion"] == crit)
                rows.append({"comparison": cell["comparison"], "subset": SUBSET_LABELS[subset], "first": subset == "all",
                             **_cell_view(cell)})
        tables.append({"criterion": crit, "label": CRITERION_LABELS.get(crit, crit), "rows": rows})
    return tables


def category_rows(summary: dict) -> list[dict]:
    return [
        {
            "category": c["category"],
            "comparison": c["comparison"],
            "criterion": CRITERION_LABELS.get(c["criterion"], c["criterion"]),
            "wins": c["wins"],
            "losses": c["losses"],
            "ties": c["ties"],
            "rate": _pct(c["rate"]),
            "ci": _ci(c["ci_wilson"]),
            "p_value": _p(c["p_value"]),
            "p_bh": _p(c["p_bh"]),
        }
        # by category, then in the stats module's (baseline, criterion) order
        for _, c in sorted(enumerate(summary["results"]["declared"]["categories"]),
                           key=lambda ic: (ic[1]["category"] == "(none)", ic[1]["category"], ic[0]))
    ]


def qc_rows(annotators: list[dict], people: dict[str, dict]) -> list[dict]:
    """One table for every annotator of the round: who they are on the platform (Prolific ID,
    progress, live QC) and the analysis' QC; annotators without a vote yet are listed too."""
    blank = {"votes": 0, "attention": "—", "attention_accuracy": "—", "median_ms": "—", "fast": "—", "sides": "—",
             "left_rate": "—", "left_p": "—", "side_rate": "—", "excluded": False, "reasons": ""}
    rows = []
    seen = set()
    for a in annotators:
        seen.add(a["annotator"])
        rows.append({
            "annotator": a["annotator"],
            **_person(people.get(a["annotator"])),
            "votes": a["votes"],
            "attention": f"{a['attention_correct']}/{a['attention_checks']}" if a["attention_checks"] else "—",
            "attention_accuracy": _pct(a["attention_accuracy"]),
            "median_ms": "—" if a["median_response_ms"] is None else f"{a['median_response_ms']:.0f}",
            "fast": f"{a['fast_votes']} ({_pct(a['fast_share'])})",
            "sides": f"{a['left']} / {a['right']} / {a['ties']}",
            "left_rate": _pct(a["left_rate"]),
            "left_p": _p(a["left_p"]),
            "side_rate": _pct(a["side_rate"]),
            "excluded": a["excluded"],
            "reasons": ", ".join(a["reasons"]),
        })
    for name in sorted(set(people) - seen):
        rows.append({"annotator": name, **_person(people[name]), **blank})
    return rows


def _person(p: dict | None) -> dict:
    p = p or {}
    return {"qc_status": p.get("qc_status", ""), "status": p.get("status", ""), "prolific_pid": p.get("prolific_pid") or "—"}


def planner_rows(summary: dict) -> list[dict]:
    """Votes needed per cell at the observed preference and tie rate (declared results) vs so far.

    Exact two-sided binomial at the family's Holm first-step level (alpha / number of cells),
    80% power, scaled by the cell's design effect as measured so far (the clustered variance over
    the independent-votes variance; at least 1).
    """
    settings = summary["settings"]
    cells = summary["results"]["declared"]["preference"]
    n_tests = len(cells)
    out = []
    for c in cells:
        p, tie_rate = c["rate_excl_ties"], c["tie_rate"] or 0.0
        row = {"comparison": c["comparison"], "criterion": CRITERION_LABELS.get(c["criterion"], c["criterion"]),
               "observed": _pct(p), "tie_rate": _pct(c["tie_rate"]), "votes": c["n"], "needed": None, "note": "",
               "design_effect": "—"}
        if p is None:
            row["note"] = "no non-tie votes yet"
        elif abs(p - 0.5) < PLANNER_MIN_EFFECT or p in (0.0, 1.0) or tie_rate >= 1:
            row["note"] = "observed preference too close to 50% (or at 0/100%) to plan for"
        else:
            de = c["primary"]["design_effect"]
            de = max(1.0, de) if de is not None else 1.0
            row["design_effect"] = f"{de:.2f}"
            try:
                plan = stats.votes_needed(p, power=PLANNER_POWER, alpha=settings["alpha"], n_tests=n_tests,
                                          tie_rate=tie_rate, design_effect=de)
            except ValueError as exc:
                row["note"] = str(exc)
            else:
                row["needed"] = plan.votes_stable
                row["non_tie_needed"] = plan.non_tie_stable
                row["remaining"] = max(0, plan.votes_stable - c["n"])
                row["enough"] = c["n"] >= plan.votes_stable
        out.append(row)
    return out


def _num_ci(pair) -> str:
    lo, hi = pair
    return "—" if lo is None or hi is None else f"{lo:.3f} to {hi:.3f}"


SCORE_LABELS = {"itc": "ITC", "itm": "ITM", "cap": "CAP"}


def score_rows(block: dict | None) -> list[dict]:
    """One row per criterion x automatic score: how often people preferred the better-scored image."""
    if not block or not block.get("available"):
        return []
    return [
        {
            "criterion": CRITERION_LABELS.get(crit, crit),
            "score": SCORE_LABELS.get(name, name),
            "agree": v["agree"],
            "disagree": v["disagree"],
            "rate": _pct(v["rate"]),
            "ci": _ci(v["ci_bootstrap_prompt"]),
            "human_ties": v["human_ties"],
            "score_ties": v["score_ties"],
            "missing": v["missing"],
        }
        for crit, per in block["criteria"].items()
        for name, v in per.items()
    ]


def category_title(rnd: StudyRound) -> str:
    """The category table's title names the round's prompt set, not DrawBench unless it is."""
    name = getattr(getattr(rnd, "prompt_set", None), "name", "") or ""
    return f"By prompt category ({name})" if name else "By prompt category"


def _inline_svg(svg: bytes) -> str:
    """The figure's SVG without its XML prolog and doctype, for embedding in the page."""
    text = svg.decode("utf-8")
    return text[text.index("<svg"):] if "<svg" in text else ""


def results_context(rnd: StudyRound) -> dict:
    """What templates/research/_results.html shows; ``error`` says why there are no numbers.

    Never raises: the round page must stay usable (to close the round, to download) whatever the
    votes look like, so an unexpected failure is logged and shown as a message."""
    try:
        return _results_context(rnd)
    except exports.ExportError as exc:
        return {"error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - shown on the page, logged with its traceback
        log.exception("results of round #%s could not be shown", rnd.pk)
        return {"error": f"the results could not be computed ({type(exc).__name__}: {exc}); the error is logged"}


def _results_context(rnd: StudyRound) -> dict:
    export = exports.round_export(rnd)
    summary = export.summary
    auto_closed = auto_close.maybe_auto_close(rnd, summary)
    cells = summary["results"]["declared"]["preference"]
    monitoring = summary["settings"].get("monitoring")
    people = {a["pseudonym"]: a for a in
              Annotator.objects.filter(round=rnd).values("pseudonym", "prolific_pid", "status", "qc_status")}
    settings = summary["settings"]
    return {
        "error": "",
        "frozen": rnd.analysis_settings is not None,
        "settings": settings,
        "tie_rule": "ties excluded" if settings["tie_rule"] == "exclude" else "ties count as half a win",
        "confidence": round(100 * settings["confidence"]),
        "data": summary["data"],
        "all": summary["results"]["all"],
        "declared": summary["results"]["declared"],
        "exclusions": summary["exclusions"],
        "has_votes": summary["data"]["regular_votes"] > 0,
        "tables": preference_tables(summary),
        # matplotlib's own SVG of our numbers and objective names: no user text in it.
        "figure_svg": mark_safe(_inline_svg(export.files["figure.svg"])),
        "categories": category_rows(summary),
        "annotators": qc_rows(export.annotators, people),
        "planner": planner_rows(summary),
        "planner_power": round(100 * PLANNER_POWER),
        "agreement": [
            {"criterion": CRITERION_LABELS.get(k, k), "alpha": "—" if v["alpha"] is None else f"{v['alpha']:.3f}",
             "alpha_ci": _num_ci(v.get("ci_bootstrap_items", [None, None])),
             "units": v["units"], "percent_agreement": _pct(v["percent_agreement"])}
            for k, v in summary["results"]["declared"]["agreement"].items()
        ],
        "scores": score_rows(summary["results"]["declared"].get("score_agreement")),
        "score_note": (summary["results"]["declared"].get("score_agreement") or {}).get("note", ""),
        "monitoring": monitoring,
        "running": monitoring is None or any(c["verdict"] == "continue" for c in cells),
        "category_title": category_title(rnd),
        "auto_closed": auto_closed,
        "downloads": exports.FILE_NAMES,
    }


@staff_required
def export_file(request, round_id: int, name: str):
    """One file of the round's export bundle (votes.csv, summary.json, figure.png, ...)."""
    if name not in exports.FILE_NAMES:
        raise Http404(f"no export file {name!r}")
    rnd = get_object_or_404(StudyRound, pk=round_id)
    export = _export_or_error(rnd)
    if isinstance(export, HttpResponse):
        return export
    resp = HttpResponse(export.files[name], content_type=exports.CONTENT_TYPES[name])
    if name != "figure.svg":
        resp["Content-Disposition"] = f'attachment; filename="round-{rnd.pk}-{name}"'
    return resp


@staff_required
def export_zip(request, round_id: int):
    rnd = get_object_or_404(StudyRound, pk=round_id)
    export = _export_or_error(rnd)
    if isinstance(export, HttpResponse):
        return export
    resp = HttpResponse(export.zip_bytes(), content_type="application/zip")
    resp["Content-Disposition"] = f'attachment; filename="round-{rnd.pk}-export.zip"'
    return resp


def _export_or_error(rnd: StudyRound):
    try:
        export = exports.round_export(rnd)
        auto_close.maybe_auto_close(rnd, export.summary)
        return export
    except exports.ExportError as exc:
        return HttpResponse(f"cannot export round #{rnd.pk}: {exc}\n", status=409, content_type="text/plain; charset=utf-8")
    except Exception as exc:  # noqa: BLE001 - a message and a log entry, never a bare 500 page
        log.exception("export of round #%s failed", rnd.pk)
        return HttpResponse(f"cannot export round #{rnd.pk}: unexpected {type(exc).__name__}: {exc} (logged)\n",
                            status=409, content_type="text/plain; charset=utf-8")

