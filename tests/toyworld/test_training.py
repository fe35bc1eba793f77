"""The toy BLIP's training recipe: several hard negatives, BLIP's encoder-decoder tie, the command line,
and the paper-in-miniature's tests of the paper's claims."""

import json

import numpy as np
import pytest
import torch

from generation.toyworld import captions as C
from generation.toyworld import negatives as N
from generation.toyworld import store
from generation.toyworld.models import build_toy_blip, load_toy_blip
from generation.toyworld.scenes import Obj, Scene, sample_scene
from generation.toyworld.train_blip import main as train_main
from generation.toyworld.train_blip import tie_encoder_decoder

SCENE = Scene((Obj("circle", "red", "small", 0.2, 0.5), Obj("square", "blue", "small", 0.8, 0.5)), (240, 240, 240))
TRUE = C.Claim((C.NounPhrase("circle", "red"), C.NounPhrase("square", "blue")), "left of")


def test_one_hard_negative_replays_the_older_draws():
    for seed in range(20):
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        old = N.hard_negative(TRUE, SCENE, a)
        assert N.hard_negatives(TRUE, SCENE, b, 1) == ([] if old is None else [old])
        assert a.random() == b.random()  # the stream moved by the same draws


def test_several_hard_negatives_are_distinct_and_false():
    rng = np.random.default_rng(1)
    got = N.hard_negatives(TRUE, SCENE, rng, 3)
    assert len(got) == 3 and len({g.text() for g in got}) == 3
    assert not any(C.claim_true(g, SCENE) for g in got)
    # never more than the kinds that apply: a relation between single objects has no count change
    scenes = [sample_scene(rng) for _ in range(200)]
    for scene in scenes:
        claim = N.training_claim(scene, rng)
        many = N.hard_negatives(claim, scene, rng, len(N.KINDS))
        assert len(many) == len({m.text() for m in many}) <= len(N.KINDS)
        assert not any(C.claim_true(m, scene) for m in many)


def _shared(model):
    enc, dec = model.text_encoder, model.text_decoder.bert
    return enc, dec


def test_tie_shares_everything_but_self_attention_and_keeps_the_checkpoint_keys():
    model = build_toy_blip(seed=0)
    keys_before = list(model.state_dict())
    params_before = len(list(model.parameters()))
    n = tie_encoder_decoder(model)
    enc, dec = _shared(model)
    layer_e, layer_d = enc.encoder.layer[0], dec.encoder.layer[0]
    assert layer_d.crossattention.self.query.weight is layer_e.crossattention.self.query.weight
    assert layer_d.intermediate.dense.weight is layer_e.intermediate.dense.weight
    assert layer_d.output.LayerNorm.bias is layer_e.output.LayerNorm.bias
    assert dec.embeddings.word_embeddings.weight is enc.embeddings.word_embeddings.weight
    assert layer_d.attention.self.query.weight is not layer_e.attention.self.query.weight  # causal vs bidirectional
    assert model.text_decoder.cls.predictions.decoder.weight is not enc.embeddings.word_embeddings.weight
    assert list(model.state_dict()) == keys_before  # both copies saved, as in BLIP's checkpoints
    assert len(list(model.parameters())) == params_before - n  # each tied tensor is trained once
    assert n == 36  # 2 layers x 16 (cross-attention 10, feed-forward 6) + 4 embedding tensors


def test_a_tied_model_loads_strictly_into_an_untied_one_and_scores_the_same():
    from generation.checkpoints import load_strict

    tied = build_toy_blip(seed=3)
    tie_encoder_decoder(tied)
    opt = torch.optim.SGD(tied.parameters(), lr=0.5)
    loss = tied.cap(images=torch.rand(2, 3, 32, 32) * 2 - 1, texts=["a red circle", "two blue squares"]).mean()
    loss.backward()
    opt.step()  # the shared layers move together
    sd = tied.state_dict()
    assert torch.equal(sd["text_encoder.encoder.layer.1.crossattention.self.key.weight"],
                       sd["text_decoder.bert.encoder.layer.1.crossattention.self.key.weight"])
    fresh = build_toy_blip(seed=99)
    load_strict(fresh, sd, what="tied toy BLIP")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        for head in ("itc", "itm", "cap"):
            assert torch.allclose(getattr(tied.eval(), head)(images=x, texts=["a red circle left of a blue square"] * 2),
                                  getattr(fresh.eval(), head)(images=x, texts=["a red circle left of a blue square"] * 2))


@pytest.mark.parametrize("bad", ["text_layers", "text_layers=two", "no_such_field=3", "=4"])
def test_the_blip_option_names_what_to_fix(bad, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        train_main(["--blip", bad, "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert "FIELD=INT" in capsys.readouterr().err
    assert not (tmp_path / "blip.pt").exists()


def test_a_short_run_writes_weights_that_load_strictly_with_how_they_were_made(tmp_path):
    info = train_main(["--steps", "5", "--n-train", "64", "--batch-size", "8", "--n-eval", "4", "--tie-encoder-decoder",
                       "--hard-per-image", "2", "--blip", "text_layers=3", "--out", str(tmp_path)])
    entry = store.read_manifest(tmp_path)["blip"]
    assert entry["tie_encoder_decoder"] is True and entry["hard_per_image"] == 2 and entry["device"] == "cpu"
    assert entry["config"]["text_layers"] == 3 and entry["steps"] == 5
    assert "--tie-encoder-decoder" in entry["command"] and "--decay-from 4" in entry["command"]
    model = load_toy_blip(tmp_path)  # sha256 checked, strict keys, the recorded config
    assert len(model.text_encoder.encoder.layer) == 3
    for key in ("itm_relation_prefers_true", "cap_binding_prefers_true"):
        assert 0.0 <= entry["metrics"][key] <= 1.0
    assert info["metrics"] == entry["metrics"]
    # tampering is refused
    (tmp_path / "blip.pt").write_bytes((tmp_path / "blip.pt").read_bytes()[:-10])
    with pytest.raises(Exception, match="sha256|checksum|corrupt|truncated"):
        load_toy_blip(tmp_path)
    json.dumps(entry)  # the manifest entry is plain JSON


def test_tie_experiment_runs_each_mode():
    from generation.toyworld.tie_experiment import MODES, run

    for mode in MODES:
        log = run(mode, steps=2, batch=4, log_every=2, n_test=8)
        assert log[-1]["step"] == 2 and 0 <= log[-1]["itm_relation_prefers_true"] <= 1
    with pytest.raises(ValueError, match="mode must be one of"):
        run("both", steps=1)
