"""GenerationSpec: validation naming every problem, JSON round trip, stable hash."""

import dataclasses
import hashlib
import json
import subprocess
import sys

import pytest

from pathlib import Path

from generation.spec import OBJECTIVES, GenerationSpec, SpecError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_round_trip_through_json():
    spec = GenerationSpec()
    again = GenerationSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.spec_hash() == spec.spec_hash()


def test_hash_is_sha256_of_canonical_json_and_order_free():
    spec = GenerationSpec.tiny(scale_shift=2.5)
    d = spec.to_dict()
    del d["view_augment"], d["recurrence"]  # late fields at their default stay out of the canonical JSON
    expected = hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert spec.spec_hash() == expected
    reversed_order = dict(reversed(list(d.items())))
    assert GenerationSpec.from_dict(reversed_order).spec_hash() == expected


def test_hash_is_the_same_in_another_process():
    code = "from generation.spec import GenerationSpec; print(GenerationSpec.tiny(eta=0.5).spec_hash())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout.strip()
    assert out == GenerationSpec.tiny(eta=0.5).spec_hash()


def test_ints_and_floats_hash_alike():
    assert GenerationSpec(eta=0).spec_hash() == GenerationSpec(eta=0.0).spec_hash()
    assert GenerationSpec.from_dict({"scale_itc": 1}).spec_hash() == GenerationSpec(scale_itc=1.0).spec_hash()


@pytest.mark.parametrize("field, value", [("respacing", "250"), ("sampler", "ddim"), ("scale_cap", 0.31),
                                          ("cap_prompt", ""), ("views", 2), ("clip_denoised", False)])
def test_every_field_changes_the_hash(field, value):
    assert GenerationSpec(**{field: value}).spec_hash() != GenerationSpec().spec_hash()


def test_from_dict_lists_every_problem():
    bad = {"sampler": "euler", "eta": "zero", "views": 0, "respacing": "ddim7x", "colour": "red",
           "blip_image_size": 100, "precision": "fp16", "scale_itc": -1}
    with pytest.raises(SpecError) as err:
        GenerationSpec.from_dict(bad)
    fields = {p.split(":")[0] for p in err.value.problems}
    assert fields == {"sampler", "eta", "views", "respacing", "colour", "blip_image_size", "precision", "scale_itc"}
    assert "unknown field" in str(err.value) and "'ddpm', 'ddim'" in str(err.value)


def test_constructor_validates_too():
    with pytest.raises(SpecError, match="guided_image"):
        GenerationSpec(guided_image="xt")


def test_frozen_and_scales_per_objective():
    spec = GenerationSpec(scale_itc=1.0, scale_cap=2.0, scale_shift=3.0, scale_blend=4.0, scale_itm=5.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.eta = 1.0
    assert [spec.scale_for(o) for o in OBJECTIVES] == [1.0, 5.0, 2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="SHFT"):
        spec.scale_for("SHFT")


def test_spec_module_does_not_import_torch():
    code = "import sys, generation.spec; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout.strip()
    assert out == "False"


# -- specs that would silently mis-render are refused (issue 14 item 7) -------------------------


@pytest.mark.parametrize("field, value", [("clip_denoised", "yes"), ("clip_denoised", 1), ("views", "2"),
                                          ("batch_size", True), ("eta", "0.5"), ("sampler", 3), ("cap_prompt", None)])
def test_constructor_checks_types_like_from_dict(field, value):
    with pytest.raises(SpecError) as err:
        GenerationSpec(**{field: value})
    assert [p.split(":")[0] for p in err.value.problems] == [field]
    with pytest.raises(SpecError):
        GenerationSpec.from_dict({field: value})


@pytest.mark.parametrize("spelling", [" 100", "100 ", "0100", "\t100\n"])
def test_respacing_spellings_normalise_to_one_hash(spelling):
    spec = GenerationSpec(respacing=spelling)
    assert spec.respacing == "100"
    assert spec.spec_hash() == GenerationSpec(respacing="100").spec_hash()
    assert GenerationSpec.from_dict({"respacing": spelling}).spec_hash() == GenerationSpec().spec_hash()


def test_respacing_normalises_sections_and_ddim():
    assert GenerationSpec(respacing="10, 20").respacing == "10,20"
    assert GenerationSpec(respacing=" DDIM50").respacing == "ddim50"
    assert GenerationSpec(respacing="ddim50").spec_hash() == GenerationSpec(respacing=" DDIM50").spec_hash()


@pytest.mark.parametrize("respacing, ok", [("1", False), ("2", True), ("ddim1", False), ("ddim2", True), ("0", False)])
def test_respacing_needs_at_least_two_steps(respacing, ok):
    if ok:
        assert GenerationSpec(respacing=respacing).respacing == respacing
    else:
        with pytest.raises(SpecError, match="respacing"):
            GenerationSpec(respacing=respacing)


@pytest.mark.parametrize("itc, cap, ok", [(0, 0, False), (0.0, 0.0, False), (0, 1e-9, True), (1, 0, True), (0.5, 0.5, True)])
def test_blend_weights_cannot_both_be_zero(itc, cap, ok):
    fields = {"blend_weight_itc": itc, "blend_weight_cap": cap}
    if ok:
        GenerationSpec.from_dict(fields)
    else:
        with pytest.raises(SpecError, match="unguided"):
            GenerationSpec.from_dict(fields)


@pytest.mark.parametrize("field, low, limit, step", [("batch_size", 1, 256, 1), ("views", 1, 64, 1), ("blip_image_size", 16, 1024, 16)])
def test_integer_fields_have_upper_bounds(field, low, limit, step):
    assert getattr(GenerationSpec.from_dict({field: limit}), field) == limit
    for above in (limit + step, 10**12):
        with pytest.raises(SpecError) as err:
            GenerationSpec.from_dict({field: above})
        assert f"{field}: must be an integer from {low} to {limit}" in str(err.value)


def test_scales_have_an_upper_bound_and_cap_prompt_refuses_nul():
    GenerationSpec(scale_itc=1e6)
    with pytest.raises(SpecError, match="scale_itc: at most"):
        GenerationSpec(scale_itc=1.5e6)
    with pytest.raises(SpecError, match="cap_prompt"):
        GenerationSpec(cap_prompt="a\x00b")
    with pytest.raises(SpecError, match="cap_prompt"):
        GenerationSpec(cap_prompt="x" * 201)


def test_late_fields_at_their_default_keep_old_hashes():
    """A spec stored before view_augment and recurrence existed (no such keys) hashes as it did;
    setting a new field away from its default changes the hash."""
    old = {k: v for k, v in GenerationSpec().to_dict().items() if k not in ("view_augment", "recurrence")}
    old_hash = hashlib.sha256(json.dumps(old, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert GenerationSpec.from_dict(old).spec_hash() == old_hash == GenerationSpec().spec_hash()
    assert GenerationSpec(view_augment="affine_perspective").spec_hash() != old_hash
    assert GenerationSpec(recurrence=2).spec_hash() != old_hash
    assert GenerationSpec.from_dict({**old, "recurrence": 1}).spec_hash() == old_hash


@pytest.mark.parametrize("value,ok", [(1, True), (10, True), (0, False), (11, False), (-1, False), (2.0, True),
                                      (2.5, False), ("3", False), (True, False), (None, False)])
def test_recurrence_bounds_and_types(value, ok):
    """1 (none) to MAX_RECURRENCE = 10 guided passes per step; at, below and above both ends."""
    if ok:
        assert GenerationSpec.from_dict({"recurrence": value}).recurrence == int(value)
        return
    with pytest.raises(SpecError, match="recurrence"):
        GenerationSpec.from_dict({"recurrence": value})


def test_default_blip_size_is_the_pretrain_checkpoints_training_resolution():
    """Evidence from the checkpoint itself: the listing's visual_encoder.pos_embed is 1x197x768,
    i.e. 196 = 14x14 patches of 16 px plus CLS -> 224 px."""
    from generation.checkpoints import read_keys_tsv
    from generation.weights import KEYS_DIR

    shape = read_keys_tsv(KEYS_DIR / "blip_pretrain_base.keys.tsv")["visual_encoder.pos_embed"]
    assert shape == (1, 197, 768)
    side = int((shape[1] - 1) ** 0.5) * 16
    assert GenerationSpec().blip_image_size == side == 224
