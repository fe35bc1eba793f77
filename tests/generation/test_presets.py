"""Named presets: resolution, overrides, the stored canonical form, and refusals."""

import pytest

from generation.presets import PRESETS, canonical_config, preset_name, spec_from_config
from generation.spec import GenerationSpec, SpecError


def test_toy_preset_is_the_toy_spec():
    assert spec_from_config({"preset": "toy"}) == GenerationSpec.toy()


def test_override_wins_over_the_preset():
    spec = spec_from_config({"preset": "toy", "scale_shift": 0.3})
    assert spec.scale_shift == 0.3 and spec.unet == "toy"


def test_canonical_config_is_idempotent_and_keeps_the_name():
    once = canonical_config({"preset": "tiny", "batch_size": 2})
    assert once["preset"] == "tiny" and once["batch_size"] == 2
    assert canonical_config(once) == once
    assert spec_from_config(once).spec_hash() == spec_from_config({"preset": "tiny", "batch_size": 2}).spec_hash()


def test_fields_without_a_preset_keep_their_old_meaning():
    fields = GenerationSpec.toy().to_dict()
    assert spec_from_config(fields) == GenerationSpec.toy()
    assert preset_name(fields) == "custom"
    assert preset_name({}) == "paper"


@pytest.mark.parametrize("bad", [{"preset": "nope"}, {"preset": 3}, {"preset": None, "x": 1}, ["toy"]])
def test_unknown_preset_or_junk_is_refused(bad):
    with pytest.raises(SpecError):
        spec_from_config(bad)


def test_every_preset_resolves():
    for name in PRESETS:
        spec_from_config({"preset": name})


# -- every preset: validated, hashed, round-tripped --------------------------------------------

import json  # noqa: E402

from generation.presets import PAPER_EVIDENCE, PAPER_GUESSES, preset_choices  # noqa: E402


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_validates_hashes_and_round_trips(name):
    spec = spec_from_config({"preset": name})
    stored = json.loads(json.dumps(canonical_config({"preset": name})))  # what a round keeps, through JSON
    assert stored["preset"] == name
    again = spec_from_config(stored)
    assert again == spec and again.spec_hash() == spec.spec_hash()
    assert GenerationSpec.from_dict(spec.to_dict()) == spec
    assert len(spec.spec_hash()) == 64 and spec.spec_hash() == spec_from_config({"preset": name}).spec_hash()


def test_presets_hash_apart_and_are_offered_by_name():
    hashes = {name: spec_from_config({"preset": name}).spec_hash() for name in PRESETS}
    assert len(set(hashes.values())) == len(PRESETS)
    assert [n for n, _ in preset_choices()] == list(PRESETS)
    assert {"paper", "normalised", "toy", "tiny", "custom"} <= set(PRESETS)


# -- the paper preset, setting by setting, with its evidence ----------------------------------

PAPER = spec_from_config({"preset": "paper"})


@pytest.mark.parametrize("field, value, evidence", [
    ("blip_image_size", 224, "pos_embed is 1x197x768"),
    ("blip", "model_base", "pretrain checkpoint"),
    ("unet", "guided-diffusion-256-uncond", "unconditional 256x256"),
    ("respacing", "100", "--timestep_respacing default '100'"),
    ("sampler", "ddpm", "p_sample_loop_progressive"),
    ("clip_denoised", False, "clip_denoised=False"),
    ("guided_image", "blend", "x_in = pred_xstart * fac + x * (1 - fac)"),
    ("views", 8, "--aug_num default 8"),
    ("view_augment", "affine_perspective", "RandomAffine(degrees=15, translate=0.1"),
    ("range_loss_weight", 50.0, "--range_lambda default 50"),
    ("normalization", "none", "no normalisation"),
    ("itc_loss", "cos_temp", "sim / self.temp"),
    ("itm_first_token", "[ENC]", "enc_token_id"),
    ("cap_prompt", "", "no prompt"),
    ("cap_label_smoothing", 0.1, "label_smoothing=0.1"),
])
def test_paper_setting_follows_its_evidence(field, value, evidence):
    assert getattr(PAPER, field) == value
    assert evidence in PRESETS["paper"].evidence[field]


def test_every_paper_setting_has_evidence_or_is_a_named_guess():
    fields = set(GenerationSpec().to_dict())
    assert set(PAPER_EVIDENCE) <= fields
    unaccounted = set(PRESETS["paper"].values) - set(PAPER_EVIDENCE) - set(PAPER_GUESSES) - {"blend_weight_cap", "batch_size"}
    assert unaccounted == set()
    for name in ("scale_itc", "scale_itm", "scale_cap", "scale_shift", "scale_blend"):
        assert "pilot" in PAPER_GUESSES[name]


def test_normalised_preset_is_the_paper_with_equal_push():
    paper, norm = PAPER.to_dict(), spec_from_config({"preset": "normalised"}).to_dict()
    differ = {k for k in paper if paper[k] != norm[k]}
    assert differ == {"normalization", "scale_itc", "scale_itm", "scale_cap", "scale_shift", "scale_blend"}
    assert norm["normalization"] == "unit"


def test_an_old_round_config_keeps_its_resolved_settings():
    """Rounds store every resolved field: changing a preset's values never changes a stored round."""
    old = {"preset": "paper", **GenerationSpec().to_dict()}  # resolved under the old paper values
    assert spec_from_config(old) == GenerationSpec()
