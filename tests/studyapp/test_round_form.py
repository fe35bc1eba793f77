"""The new-round form (issue 11 item 10) and its junk input (issue 13 item 3): every setting,
every error at once, presets, the live estimate; never a 500."""

import json
import re

import pytest

from studyapp.models import StudyRound
from studyapp.round_config import RoundConfig

pytestmark = pytest.mark.django_db

URL = "/research/rounds/new/"
REQUIRED = {
    "name": "form round", "prompt_set": "drawbench", "prompt_limit": 2, "objectives": ["SHIFT", "ITC"],
    "seeds_per_prompt": 1, "comparisons": "shift-vs-baselines", "votes_per_item": 2, "trials_per_annotator": 5,
    "attention_check_rate": 0.1,
}


def created(resp):
    assert resp.status_code == 302, resp.content.decode()[:3000]
    return StudyRound.objects.get(pk=int(resp["Location"].rstrip("/").split("/")[-1]))


def test_page_shows_presets_every_setting_and_the_estimate_hook(staff_client, settings, tmp_path):
    settings.WEIGHTS_DIR = tmp_path  # no checkpoints here
    page = staff_client.get(URL).content.decode()
    for name in ("practice_trials", "min_view_ms", "assignment_timeout_s", "min_attention_accuracy", "min_response_ms",
                 "max_side_rate", "side_rate_min_votes", "no_side_rule", "prolific_completion_url", "consent_text",
                 "preset", "generation", "expected_preference", "design_effect"):
        assert f'name="{name}"' in page, name
    assert "Toy world" in page and "Tiny random weights" in page
    # without checkpoints: the paper preset says what happens, and the toy world is preselected
    assert "256x256_diffusion_uncond.pt" in page and "missing in WEIGHTS_DIR" in page
    assert re.search(r'<input type="radio" name="preset" value="toy"[^>]* checked', page)
    assert "js/round_form.js" in page and "<script>" not in page and "onclick" not in page


def test_required_fields_only_take_every_default(staff_client):
    rnd = created(staff_client.post(URL, REQUIRED))
    cfg = RoundConfig.from_dict(rnd.config)
    defaults = RoundConfig.from_dict({**REQUIRED, "prompt_set": "drawbench", "name": "x"})
    for field in ("practice_trials", "min_view_ms", "assignment_timeout_s", "tie_rule", "round_seed", "exclusions",
                  "prolific_completion_url", "consent_text", "generation"):
        assert getattr(cfg, field) == getattr(defaults, field), field
    assert rnd.config["generation"]["preset"] == "paper"


@pytest.mark.parametrize("field, value, expect", [
    ("prompt_limit", "", ("prompt_limit", None)),
    ("practice_trials", "0", ("practice_trials", 0)),
    ("min_view_ms", "2500", ("min_view_ms", 2500)),
    ("assignment_timeout_s", "30", ("assignment_timeout_s", 30)),
    ("tie_rule", "half", ("tie_rule", "half")),
    ("round_seed", "7", ("round_seed", 7)),
    ("min_attention_accuracy", "0.5", ("exclusions.min_attention_accuracy", 0.5)),
    ("min_response_ms", "300", ("exclusions.min_response_ms", 300)),
    ("max_side_rate", "0.95", ("exclusions.max_side_rate", 0.95)),
    ("no_side_rule", "on", ("exclusions.max_side_rate", None)),
    ("side_rate_min_votes", "10", ("exclusions.side_rate_min_votes", 10)),
    ("prolific_completion_url", "https://app.prolific.com/submissions/complete?cc=ABC",
     ("prolific_completion_url", "https://app.prolific.com/submissions/complete?cc=ABC")),
    ("consent_text", "Contact: a@b.c. Ethics ref 12.", ("consent_text", "Contact: a@b.c. Ethics ref 12.")),
    ("preset", "toy", ("generation.unet", "toy")),
    ("generation", '{"respacing": "50"}', ("generation.respacing", "50")),
])
def test_each_optional_field_reaches_the_config(staff_client, field, value, expect):
    rnd = created(staff_client.post(URL, {**REQUIRED, field: value}))
    node = rnd.config
    for part in expect[0].split("."):
        node = node[part]
    assert node == expect[1]
    RoundConfig.from_dict(rnd.config)


def test_invalid_json_does_not_hide_the_other_errors(staff_client):
    bad = {**REQUIRED, "objectives": ["ITC", "CAP"], "votes_per_item": "0", "generation": "{not json",
           "prolific_completion_url": "http://insecure", "max_side_rate": "0.2"}
    resp = staff_client.post(URL, bad)
    page = resp.content.decode()
    assert resp.status_code == 200 and not StudyRound.objects.exists()
    for needle in ("not valid JSON", "needs SHIFT", "greater than or equal to 1",
                   "https:// URL", "max_side_rate"):
        assert needle in page, needle


def test_spec_problems_and_preset_conflicts_are_listed(staff_client):
    resp = staff_client.post(URL, {**REQUIRED, "preset": "toy", "generation": '{"respacing": "zz", "colour": 1}'})
    page = resp.content.decode()
    assert "generation.respacing" in page and "colour" in page and not StudyRound.objects.exists()
    resp = staff_client.post(URL, {**REQUIRED, "preset": "toy", "generation": '{"preset": "paper"}'})
    assert "choose the preset above" in resp.content.decode()


def deep(n):
    return "[" * n + "]" * n


JUNK = [
    ("name", "a\x00b"),
    ("name", "n" * 100_000),
    ("generation", '{"cap_prompt": ' + deep(100_000) + "}"),
    ("generation", '{"cap_prompt": ' + deep(30) + "}"),
    ("generation", '{"cap_prompt": "a\\u0000b"}'),
    ("generation", '{"a\\u0000": 1}'),
    ("generation", '{"batch_size": ' + "9" * 5000 + "}"),
    ("consent_text", "ok\x00"),
    ("prolific_completion_url", "https://x/\x00"),
    ("prompt_set", "drawbench\x00"),
    ("objectives", "SHIFT\x00"),
    ("seeds_per_prompt", "1\x00"),
    ("attention_check_rate", "nan"),
    ("attention_check_rate", "inf"),
    ("expected_preference", "\x00"),
    ("max_side_rate", "nan"),
]


@pytest.mark.parametrize("field, value", JUNK, ids=[f"{f}-{i}" for i, (f, _) in enumerate(JUNK)])
def test_junk_gets_a_listed_error_never_a_500(staff_client, field, value):
    resp = staff_client.post(URL, {**REQUIRED, field: value})
    assert resp.status_code == 200
    assert 'id="form-problems"' in resp.content.decode()
    assert not StudyRound.objects.exists()
    # the estimate endpoint takes the same junk without failing
    assert staff_client.get("/research/rounds/estimate.json", {**REQUIRED, field: value}).status_code == 200


def test_duplicate_prefills_an_editable_copy(staff_client):
    rnd = created(staff_client.post(URL, {**REQUIRED, "preset": "toy", "generation": '{"respacing": "50"}',
                                          "min_view_ms": "2500", "no_side_rule": "on", "consent_text": "Hi"}))
    page = staff_client.get(f"/research/rounds/{rnd.pk}/").content.decode()
    assert f"/research/rounds/new/?from={rnd.pk}" in page
    form = staff_client.get(f"{URL}?from={rnd.pk}").context["form"]
    data = {k: v for k, v in form.initial.items() if v is not None}
    assert data["name"] == "Copy of form round" and data["preset"] == "toy"
    assert json.loads(data["generation"]) == {"respacing": "50"}  # only what differs from the preset
    copy = created(staff_client.post(URL, {**data, "no_side_rule": "on" if data.get("no_side_rule") else ""}))
    assert copy.pk != rnd.pk and copy.status == "draft"
    assert {**copy.config, "name": rnd.name} == rnd.config
    for junk in ("abc", "²", "999999", "1\x00"):
        assert staff_client.get(URL, {"from": junk}).status_code == 200


def test_estimate_counts_and_planner_verdict(staff_client):
    from studyapp.stats import votes_needed

    est = staff_client.get("/research/rounds/estimate.json", {
        **REQUIRED, "prompt_limit": 100, "objectives": ["SHIFT", "ITC", "CAP", "BLEND"], "seeds_per_prompt": 2,
        "votes_per_item": 3, "trials_per_annotator": 40, "attention_check_rate": 0.1, "preset": "toy",
        "expected_preference": 0.6, "expected_tie_rate": 0.25, "design_effect": 2,
    }).json()
    assert est["ok"] and est["prompts"] == 100
    assert est["renders"] == 100 * 2 * 4 and est["items"] == 100 * 2 * 3 and est["votes"] == 1800
    assert est["votes_per_cell"] == 600 and est["cells"] == 6
    assert est["regular_trials_per_annotator"] == 36  # 4 of 40 are attention checks
    assert est["annotators"] == 50  # ceil(1800 / 36)
    need = votes_needed(0.6, power=0.8, alpha=0.05, n_tests=6, tie_rate=0.25, design_effect=2.0).votes_stable
    assert est["plan"]["needed"] == need and est["plan"]["enough"] is (600 >= need)
    if not est["plan"]["enough"]:  # the suggestions reach the need, one less would not
        per_item, prompts = est["plan"]["votes_per_item_needed"], est["plan"]["prompts_needed"]
        assert 100 * 2 * per_item >= need > 100 * 2 * (per_item - 1)
        assert prompts * 2 * 3 >= need > (prompts - 1) * 2 * 3
    # a design effect of 1 instead of 2 halves what is needed: the input is used, not ignored
    one = staff_client.get("/research/rounds/estimate.json", {**REQUIRED, "design_effect": 1}).json()
    two = staff_client.get("/research/rounds/estimate.json", {**REQUIRED, "design_effect": 2}).json()
    assert two["plan"]["needed"] > one["plan"]["needed"] * 1.9
    # time: not measured for the paper preset, said so
    paper = staff_client.get("/research/rounds/estimate.json", {**REQUIRED, "preset": "paper"}).json()
    from generation.presets import PRESETS

    if PRESETS["paper"].seconds_per_image is None:
        assert paper["compute_seconds"] is None
    else:
        assert paper["compute_seconds"] == pytest.approx(PRESETS["paper"].seconds_per_image * paper["renders"])
    assert staff_client.get("/research/rounds/estimate.json").json() == {
        "ok": False, "missing": ["prompt set", "objectives", "seeds per prompt", "comparisons", "votes per item",
                                 "trials per annotator", "attention-check rate"]}


def test_estimate_follows_a_config_with_problems(staff_client):
    # SHIFT missing for "SHIFT vs each baseline": the round cannot be created, yet the estimate
    # still counts what was typed: 2 prompts x 2 objectives, but no pair to compare or plan
    est = staff_client.get("/research/rounds/estimate.json", {**REQUIRED, "objectives": ["ITC", "CAP"]}).json()
    assert est["ok"] and est["renders"] == 2 * 2 and est["items"] == 0 and est["cells"] == 0
    assert est["plan"]["message"].startswith("nothing to plan")


@pytest.mark.parametrize("field, value, ok", [
    ("design_effect", "1", True), ("design_effect", "0.99", False), ("design_effect", "x", False),
    ("expected_preference", "0.51", True), ("expected_preference", "0.5", False),
    ("expected_tie_rate", "0", True), ("expected_tie_rate", "-0.01", False),
])
def test_planning_inputs_at_and_beyond_their_limits(staff_client, field, value, ok):
    est = staff_client.get("/research/rounds/estimate.json", {**REQUIRED, field: value}).json()
    assert est["ok"] is ok
    if not ok:  # said, not silently replaced by the default
        assert any(m.startswith("a valid") for m in est["missing"])


def test_prolific_url_length_at_and_above_the_limit(staff_client):
    from studyapp.round_config import MAX_URL_CHARS

    base = "https://app.prolific.com/submissions/complete?cc="
    at = base + "A" * (MAX_URL_CHARS - len(base))
    assert created(staff_client.post(URL, {**REQUIRED, "prolific_completion_url": at})).config["prolific_completion_url"] == at
    resp = staff_client.post(URL, {**REQUIRED, "name": "over", "prolific_completion_url": at + "A"})
    assert resp.status_code == 200 and not StudyRound.objects.filter(name="over").exists()
    from studyapp.exceptions import ConfigError

    with pytest.raises(ConfigError, match="prolific_completion_url: at most"):
        RoundConfig.from_dict({**REQUIRED, "prolific_completion_url": at + "A"})


def test_estimate_is_staff_only(client):
    assert client.get("/research/rounds/estimate.json").status_code == 403


def test_new_round_from_a_prompt_set_page_preselects_it(staff_client):
    page = staff_client.get("/research/prompt-sets/drawbench/").content.decode()
    assert "/research/rounds/new/?prompt_set=drawbench" in page
    form = staff_client.get(URL, {"prompt_set": "drawbench"}).context["form"]
    assert form.initial["prompt_set"] == "drawbench"
    assert staff_client.get(URL, {"prompt_set": "\x00" * 500}).status_code == 200


def test_monitoring_and_auto_close_from_the_form(staff_client):
    from studyapp.stats.config import Monitoring

    rnd = created(staff_client.post(URL, {**REQUIRED, "monitoring_planned_votes": "200", "monitoring_looks": "4",
                                          "auto_close_when_decided": "on", "auto_close_at_votes": "900"}))
    cfg = RoundConfig.from_dict(rnd.config)
    assert cfg.monitoring == {"planned_votes": 200, "looks": 4, "spending": Monitoring.spending}
    assert cfg.auto_close == {"when_decided": True, "at_votes": 900}
    # blank: no monitoring and no automatic close (an unticked box is not a setting)
    rnd = created(staff_client.post(URL, {**REQUIRED, "name": "plain"}))
    assert rnd.config["monitoring"] is None and rnd.config["auto_close"] is None


@pytest.mark.parametrize("looks, ok", [("99", True), ("100", True), ("101", False)])
def test_looks_at_below_and_above_the_maximum(staff_client, looks, ok):
    resp = staff_client.post(URL, {**REQUIRED, "monitoring_planned_votes": "1000", "monitoring_looks": looks})
    assert (resp.status_code == 302) is ok
    if not ok:
        assert "Looks" in resp.content.decode()


@pytest.mark.parametrize("extra, field_label", [
    ({"monitoring_looks": "5"}, "Planned votes per cell"),  # looks need the planned votes
    ({"auto_close_when_decided": "on"}, "Close the round when every cell is decided"),  # needs monitoring
])
def test_monitoring_mistakes_are_listed_on_their_fields(staff_client, extra, field_label):
    resp = staff_client.post(URL, {**REQUIRED, **extra})
    assert resp.status_code == 200 and not StudyRound.objects.filter(name=REQUIRED["name"]).exists()
    assert field_label in resp.content.decode()


def test_estimate_plans_for_the_declared_looks_in_prompts_and_annotators(staff_client):
    from studyapp.stats.planner import plan_study

    base = {**REQUIRED, "prompt_limit": 50, "objectives": ["SHIFT", "ITC", "CAP", "BLEND"], "votes_per_item": 3,
            "trials_per_annotator": 40, "attention_check_rate": 0.1, "expected_preference": 0.65,
            "expected_tie_rate": 0.2, "design_effect": 2}
    fixed = staff_client.get("/research/rounds/estimate.json", base).json()["plan"]
    looked = staff_client.get("/research/rounds/estimate.json", {**base, "monitoring_looks": 5}).json()["plan"]
    # independent computation with the stats module's planner, same inputs (36 regular trials of 40)
    expect = plan_study(0.65, power=0.8, alpha=0.05, n_tests=6, tie_rate=0.2, design_effect=2.0, comparisons=3,
                        trials_per_annotator=36, seeds_per_prompt=1, votes_per_item=3, looks=5)
    assert looked["needed"] == expect.planned_votes_per_cell > fixed["needed"]  # looks cost a little maximum
    assert f"{expect.prompts} prompts" in looked["message"] and f"{expect.annotators} annotators" in looked["message"]
    assert "expected votes per cell to a decision" in looked["message"]
    assert "expected votes" not in fixed["message"]
    assert expect.expected_votes_h1 < expect.planned_votes_per_cell  # monitoring stops early when it is real
