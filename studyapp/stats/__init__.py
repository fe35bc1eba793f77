"""Statistics of a pairwise study: pure numpy/scipy, no Django (``python -m studyapp.stats``).

Input: one row per vote, the columns of :data:`VOTE_COLUMNS` (the votes export writes exactly
these; extra columns are ignored):

==================  ===========================================================================
round_id            the study round
vote_id             unique per vote
trial_id            the trial (one screen); a trial has one vote per criterion
annotator           the annotator's pseudonym
item_id             the comparison item (prompt x seed x objective pair)
prompt_id, prompt   the prompt's id and text
category            the prompt's category (may be empty)
seed                int, the seed index of the pair of images
trial_kind          ``regular`` | ``attention`` | ``practice``; practice rows are ignored,
                    attention rows are used only for quality control
criterion           ``realism`` | ``alignment``
objective_a/_b      the item's pair; for a SHIFT-vs-X item objective_a is SHIFT (attention
                    rows may use pseudo-names such as GOLD / DECOY)
left/right_objective  what was shown on each side
choice              ``left`` | ``right`` | ``tie``
winner              the objective chosen, or ``tie``
expected            attention rows: the correct side (``left`` | ``right``); empty otherwise
                    (also empty for an attention trial's unchecked criterion)
response_ms         int, response time
answered_at         ISO 8601
==================  ===========================================================================

Main entry points: :func:`read_votes_csv` -> :class:`VoteTable`; :func:`analyse` (settings:
:class:`AnalysisSettings`) -> a JSON-ready summary dict; :func:`annotator_qc`,
:func:`category_breakdown`, :func:`votes_needed`, :func:`plan_study`, :func:`pilot_design_effect`; :func:`write_summary_csv`,
:func:`write_figure`. The verdict's method is described in docs/statistics.md (:func:`clustered_tests`,
:func:`sequential_boundaries`, :class:`Monitoring`). Building blocks: :func:`sign_test_pvalue`, :func:`clopper_pearson`,
:func:`wilson`, :func:`holm`, :func:`benjamini_hochberg`, :func:`bt_fit`,
:func:`krippendorff_alpha_nominal`, :func:`resample_totals`.
"""

from studyapp.stats.agreement import AlphaResult, alpha_from_matrix, krippendorff_alpha_nominal
from studyapp.stats.analysis import SCHEMA, analyse, category_breakdown
from studyapp.stats.binomial import (
    SampleSize,
    benjamini_hochberg,
    clopper_pearson,
    exact_power,
    holm,
    sign_test_pvalue,
    votes_needed,
    wilson,
)
from studyapp.stats.bt import bt_fit
from studyapp.stats.clustered import CellTests, clustered_tests
from studyapp.stats.config import AnalysisSettings, Exclusions, Monitoring, SettingsError
from studyapp.stats.planner import StudyPlan, pilot_design_effect, plan_study
from studyapp.stats.sequential import boundaries as sequential_boundaries
from studyapp.stats.qc import annotator_qc, declared_mask
from studyapp.stats.report import (
    SUMMARY_CSV_COLUMNS,
    draw_figure,
    summary_json_text,
    write_annotators_csv,
    write_figure,
    write_summary_csv,
)
from studyapp.stats.resample import cluster_weights, percentile_interval, resample_totals
from studyapp.stats.simulate import simulate_votes
from studyapp.stats.table import SCORE_COLUMNS, VOTE_COLUMNS, VoteTable, VotesFileError, read_votes_csv, write_votes_csv

__all__ = [
    "SCHEMA",
    "SCORE_COLUMNS",
    "SUMMARY_CSV_COLUMNS",
    "VOTE_COLUMNS",
    "AlphaResult",
    "AnalysisSettings",
    "CellTests",
    "Monitoring",
    "StudyPlan",
    "clustered_tests",
    "pilot_design_effect",
    "plan_study",
    "sequential_boundaries",
    "Exclusions",
    "SampleSize",
    "SettingsError",
    "VoteTable",
    "VotesFileError",
    "alpha_from_matrix",
    "analyse",
    "annotator_qc",
    "benjamini_hochberg",
    "bt_fit",
    "category_breakdown",
    "clopper_pearson",
    "cluster_weights",
    "declared_mask",
    "draw_figure",
    "exact_power",
    "holm",
    "krippendorff_alpha_nominal",
    "percentile_interval",
    "read_votes_csv",
    "resample_totals",
    "sign_test_pvalue",
    "simulate_votes",
    "summary_json_text",
    "votes_needed",
    "wilson",
    "write_annotators_csv",
    "write_figure",
    "write_summary_csv",
    "write_votes_csv",
]
