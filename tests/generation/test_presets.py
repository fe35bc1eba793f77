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
