"""``python -m studyapp.stats VOTES.csv [--settings FILE.json] [--out DIR]``

Runs the whole analysis from an exported votes file alone (no database, no Django) and prints
the summary as JSON. ``--out DIR`` also writes summary.json, summary.csv, annotators.csv,
figure.svg and figure.png. ``--settings`` takes a settings JSON object, or an earlier
summary.json (its embedded settings), which reproduces that summary exactly.

``python -m studyapp.stats --plan 0.6 [--power 0.8 --n-tests 6 --tie-rate 0.25 --design-effect 1.5]``
prints the sample-size plan instead: votes per comparison and criterion, and (``"study"``) prompts,
annotators and trials, and with ``--looks K`` the expected votes under monitoring.
``--pilot VOTES.csv`` measures the design effect on an earlier round's export and plans with it.
See docs/statistics.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

from studyapp.stats.analysis import analyse
from studyapp.stats.binomial import votes_needed
from studyapp.stats.config import AnalysisSettings, SettingsError
from studyapp.stats.planner import pilot_design_effect, plan_study
from studyapp.stats.qc import annotator_qc
from studyapp.stats.report import summary_json_text, write_annotators_csv, write_figure, write_summary_csv
from studyapp.stats.table import VotesFileError, read_votes_csv


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m studyapp.stats", description=__doc__.split("\n\n")[1])
    p.add_argument("votes", nargs="?", help="exported votes CSV")
    p.add_argument("--settings", help="analysis settings JSON (or an exported summary.json)")
    p.add_argument("--out", help="directory for summary.json, summary.csv, annotators.csv, figure.svg/png")
    plan = p.add_argument_group("sample-size planner")
    plan.add_argument("--plan", type=float, metavar="P", help="true preference to plan for (e.g. 0.6)")
    plan.add_argument("--power", type=float, default=0.8)
    plan.add_argument("--alpha", type=float, default=0.05)
    plan.add_argument("--n-tests", type=int, default=6)
    plan.add_argument("--tie-rate", type=float, default=0.0)
    plan.add_argument("--design-effect", type=float, default=1.0)
    plan.add_argument("--pilot", metavar="VOTES.csv", help="estimate the design effect from an earlier round's votes")
    plan.add_argument("--comparisons", type=int, default=3, help="baselines compared with the focal objective")
    plan.add_argument("--trials-per-annotator", type=int, default=60)
    plan.add_argument("--seeds-per-prompt", type=int, default=1)
    plan.add_argument("--votes-per-item", type=int, default=3)
    plan.add_argument("--looks", type=int, default=1, help="monitoring looks (1: one analysis at the end)")
    return p


def run(votes_path: str, *, settings: AnalysisSettings, out: str | None = None) -> dict:
    """Analyse a votes CSV; with ``out``, write the summary files there. Returns the summary."""
    table = read_votes_csv(votes_path)
    summary = analyse(table, settings)
    with open(votes_path, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    summary = {**summary, "input": {"file": os.path.basename(votes_path), "sha256": digest, "rows": len(table)}}
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as fh:
            fh.write(summary_json_text(summary))
        write_summary_csv(summary, os.path.join(out, "summary.csv"))
        write_annotators_csv(annotator_qc(table, settings), os.path.join(out, "annotators.csv"))
        write_figure(summary, out)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.plan is not None:
            design_effect, pilot = args.design_effect, None
            if args.pilot:
                pilot = pilot_design_effect(read_votes_csv(args.pilot))
                if pilot["design_effect"] is None:
                    raise ValueError(f"--pilot {args.pilot}: {pilot['note']}")
                design_effect = pilot["design_effect"]
            common = dict(power=args.power, alpha=args.alpha, n_tests=args.n_tests, tie_rate=args.tie_rate,
                          design_effect=design_effect)
            plan = votes_needed(args.plan, **common).to_dict()
            plan["study"] = plan_study(
                args.plan, **common, comparisons=args.comparisons, trials_per_annotator=args.trials_per_annotator,
                seeds_per_prompt=args.seeds_per_prompt, votes_per_item=args.votes_per_item, looks=args.looks,
            ).to_dict()
            if pilot:
                plan["pilot"] = pilot
            print(json.dumps(plan, indent=2))
            return 0
        if not args.votes:
            _parser().print_usage(sys.stderr)
            print("error: a votes CSV is required (or --plan P)", file=sys.stderr)
            return 2
        settings = AnalysisSettings()
        if args.settings:
            with open(args.settings, encoding="utf-8") as fh:
                settings = AnalysisSettings.from_dict(json.load(fh))
        summary = run(args.votes, settings=settings, out=args.out)
    except (VotesFileError, SettingsError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(summary_json_text(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
