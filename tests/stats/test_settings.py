"""AnalysisSettings: validation that lists every problem, and exact JSON round trips."""

import json

import pytest

from studyapp.stats import AnalysisSettings, Exclusions, SettingsError, analyse, simulate_votes


def test_defaults_round_trip_through_json():
    s = AnalysisSettings()
    assert AnalysisSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_custom_round_trip():
    s = AnalysisSettings(
        baselines=("ITC", "ITM"),
        criteria=("alignment",),
        tie_rule="half",
        exclusions=Exclusions(min_attention_accuracy=None, min_response_ms=0, max_side_rate=None),
        bootstrap_seed=42,
    )
    assert AnalysisSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_lists_every_problem():
    with pytest.raises(SettingsError) as exc:
        AnalysisSettings.from_dict(
            {
                "tie_rule": "coin",
                "confidence": 1.5,
                "baselines": ["SHIFT"],
                "bootstrap_replicates": -1,
                "exclusions": {"min_response_ms": "fast", "max_side_rate": 0.3, "colour": 1},
                "colour": "blue",
            }
        )
    text = "\n".join(exc.value.problems)
    for needle in (
        "unknown field 'colour'",
        "exclusions.colour: unknown",
        "tie_rule: must be one of exclude, half, got 'coin'",
        "confidence: must be a number in (0, 1), got 1.5",
        "baselines: may not contain the focal objective 'SHIFT'",
        "bootstrap_replicates: must be an integer between 0",
        "exclusions.min_response_ms: must be a non-negative integer, got 'fast'",
        "exclusions.max_side_rate: must be null or in (0.5, 1], got 0.3",
    ):
        assert needle in text, needle


def test_round_config_format_is_accepted():
    # The shape studyapp.selectors_results.round_analysis_settings produces.
    s = AnalysisSettings.from_dict(
        {
            "focal": "SHIFT",
            "baselines": ["ITC", "CAP", "BLEND"],
            "criteria": ["realism", "alignment"],
            "tie_rule": "exclude",
            "bootstrap_seed": 7,
            "exclusions": {"min_attention_accuracy": 0.8, "min_response_ms": 800, "max_side_rate": 0.9, "side_rate_min_votes": 20},
        }
    )
    assert s.bootstrap_seed == 7 and s.exclusions == Exclusions()


def test_a_summary_is_accepted_as_settings():
    s = AnalysisSettings(tie_rule="half", bootstrap_replicates=50, bt_replicates=20, bootstrap_seed=3)
    summary = analyse(simulate_votes(trials_per_baseline=30, seed=1), s)
    assert AnalysisSettings.from_dict(json.loads(json.dumps(summary))) == s


@pytest.mark.parametrize("value, ok", [(1, False), (2, True), (3, True), (10_000, True), (10_001, False), (2.0, False), (True, False)])
def test_min_clusters_bounds(value, ok):
    if ok:
        assert AnalysisSettings(min_clusters=value).min_clusters == value
    else:
        with pytest.raises(SettingsError, match="min_clusters"):
            AnalysisSettings(min_clusters=value)


def test_defaults_give_the_clustered_verdict_and_older_settings_still_load():
    s = AnalysisSettings()
    assert s.figure_interval == "primary" and s.min_clusters == 10 and s.monitoring is None
    # settings.json written before issue 12 (no min_clusters, monitoring; Wilson figure) still loads.
    old = {k: v for k, v in s.to_dict().items() if k not in ("min_clusters", "monitoring")}
    old["figure_interval"] = "wilson"
    assert AnalysisSettings.from_dict(old).figure_interval == "wilson"
