"""Round config validation: every problem is listed, with the field name."""

import pytest

from studyapp.exceptions import ConfigError
from studyapp.round_config import RoundConfig


def problems_of(config):
    with pytest.raises(ConfigError) as exc:
        RoundConfig.from_dict(config)
    return exc.value.problems


def test_valid_config_round_trips(round_config):
    cfg = RoundConfig.from_dict(round_config)
    assert RoundConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.pairs() == [("SHIFT", "ITC"), ("SHIFT", "CAP"), ("SHIFT", "BLEND")]


def test_all_pairs_of_chosen_objectives(round_config):
    cfg = RoundConfig.from_dict({**round_config, "comparisons": "all-pairs", "objectives": ["CAP", "ITC", "SHIFT"]})
    assert cfg.pairs() == [("ITC", "CAP"), ("ITC", "SHIFT"), ("CAP", "SHIFT")]


def test_every_problem_is_listed_at_once(round_config):
    bad = {
        **round_config,
        "objectives": ["ITC", "CLIP"],
        "seeds_per_prompt": 0,
        "votes_per_item": "three",
        "attention_check_rate": 1.5,
        "tie_rule": "coin",
        "colour": "blue",
    }
    del bad["trials_per_annotator"]
    problems = problems_of(bad)
    text = "\n".join(problems)
    for needle in [
        "objectives: unknown CLIP",
        "seeds_per_prompt: must be between 1",
        "votes_per_item: must be an integer",
        "attention_check_rate: must be a number in [0, 1)",
        "tie_rule: must be one of exclude, half",
        "unknown field 'colour'",
        "trials_per_annotator: required",
        "'shift-vs-baselines' needs SHIFT",
    ]:
        assert needle in text, f"missing {needle!r} in {problems}"


def test_exclusions_are_validated(round_config):
    problems = problems_of({**round_config, "exclusions": {"min_attention_accuracy": 2, "speed": 1}})
    assert any("exclusions.min_attention_accuracy" in p for p in problems)
    assert any("exclusions.speed: unknown" in p for p in problems)


def test_not_an_object():
    assert problems_of([1, 2]) == ["the config must be a JSON object"]


def test_consent_text_is_optional_and_validated(round_config):
    from studyapp.exceptions import ConfigError
    from studyapp.round_config import MAX_CONSENT_CHARS, RoundConfig

    assert RoundConfig.from_dict(round_config).consent_text == ""
    assert RoundConfig.from_dict({**round_config, "consent_text": "  Contact: a@b.c  "}).consent_text == "Contact: a@b.c"
    assert RoundConfig.from_dict({**round_config, "consent_text": "x" * MAX_CONSENT_CHARS}).consent_text
    for bad in ("x" * (MAX_CONSENT_CHARS + 1), "a\x00b", 3, None):
        with pytest.raises(ConfigError) as exc:
            RoundConfig.from_dict({**round_config, "consent_text": bad})
        assert "consent_text" in str(exc.value.problems)


def test_prompt_limit_null_or_absent_means_every_prompt_and_round_trips(round_config):
    for cfg in (RoundConfig.from_dict({k: v for k, v in round_config.items() if k != "prompt_limit"}),
                RoundConfig.from_dict({**round_config, "prompt_limit": None})):
        assert cfg.prompt_limit is None
        assert cfg.to_dict()["prompt_limit"] is None and RoundConfig.from_dict(cfg.to_dict()) == cfg
    assert "prompt_limit" in str(problems_of({**round_config, "prompt_limit": 0}))
    assert "prompt_limit" in str(problems_of({**round_config, "prompt_limit": "all"}))


def test_name_length_at_and_above_the_column(round_config):
    from studyapp.round_config import MAX_NAME_CHARS

    assert RoundConfig.from_dict({**round_config, "name": "n" * MAX_NAME_CHARS}).name == "n" * MAX_NAME_CHARS
    assert problems_of({**round_config, "name": "n" * (MAX_NAME_CHARS + 1)}) == [
        f"name: at most {MAX_NAME_CHARS} characters, got {MAX_NAME_CHARS + 1}"]


def nested(depth):
    value = "x"
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_at_just_below_and_above_the_limit(round_config):
    from studyapp.round_config import MAX_DEPTH

    # generation.cap_prompt sits at depth 2; the innermost string at 2 + n
    ok = {**round_config, "generation": {"cap_prompt": nested(MAX_DEPTH - 2)}}
    assert "nested deeper" not in str(problems_of(ok))  # refused, but by the spec (not a string)
    deep = problems_of({**round_config, "generation": {"cap_prompt": nested(MAX_DEPTH - 1)}})
    assert deep == [f"generation.cap_prompt{'[0]' * (MAX_DEPTH - 1)}: nested deeper than {MAX_DEPTH} levels"]
    assert "nested deeper" in str(problems_of({**round_config, "generation": {"cap_prompt": nested(100_000)}}))


def test_nul_anywhere_is_listed_with_its_place(round_config):
    problems = problems_of({**round_config, "name": "a\x00", "objectives": ["SHIFT\x00", "ITC"],
                            "generation": {"cap_prompt": "\x00", "x\x00": 1}})
    assert problems == sorted([
        "name: contains a NUL character", "objectives[0]: contains a NUL character",
        "generation.cap_prompt: contains a NUL character", "generation: a key contains a NUL character",
    ])
