"""render_batch: paired noise, batch independence, provenance, model/spec checks, and the render CLI."""

import inspect
import json

import numpy as np
import pytest
import torch
from PIL import Image

from generation.__main__ import main
from generation.checkpoints import CheckpointError
from generation.pipeline import load_models, noise_seed, render_batch
from generation.spec import GenerationSpec

SPEC = GenerationSpec.tiny(respacing="4")


def test_noise_seed_is_stable_and_never_takes_the_objective():
    assert list(inspect.signature(noise_seed).parameters) == ["round_seed", "prompt", "seed"]
    a = noise_seed(0, "a cat", 1)
    assert a == noise_seed(0, "a cat", 1) and 0 <= a < 2**63
    assert len({a, noise_seed(1, "a cat", 1), noise_seed(0, "a cat ", 1), noise_seed(0, "a cat", 2)}) == 4


def test_objectives_share_the_initial_noise(tiny_models):
    seen = {}
    for objective in ("ITC", "CAP"):
        xs = []
        render_batch(tiny_models, SPEC, objective=objective, prompts=["a cat"], seeds=[3],
                     callback=lambda done, total: xs.append(done))
        res = render_batch(tiny_models, SPEC, objective=objective, prompts=["a cat"], seeds=[3])[0]
        seen[objective] = res
        assert xs == [1, 2, 3, 4]
    assert seen["ITC"].provenance["noise_seed"] == seen["CAP"].provenance["noise_seed"]
    assert not np.array_equal(seen["ITC"].image, seen["CAP"].image)  # same noise, other guidance


def test_image_does_not_depend_on_batch_composition(tiny_models):
    together = render_batch(tiny_models, SPEC.__class__(**{**SPEC.to_dict(), "batch_size": 3}),
                            objective="ITM", prompts=["a cat", "a dog", "a bus"], seeds=[0, 1, 2])
    alone = render_batch(tiny_models, SPEC, objective="ITM", prompts=["a dog"], seeds=[1])[0]
    diff = np.abs(together[1].image.astype(int) - alone.image.astype(int))
    assert diff.max() <= 1  # identical noise; only float summation order may differ by batch size


def test_batches_are_split_by_batch_size(tiny_models):
    spec = GenerationSpec.tiny(respacing="3", batch_size=2)
    progress = []
    res = render_batch(tiny_models, spec, objective="BLEND", prompts=["a", "b", "c"], seeds=[0, 0, 0],
                       callback=lambda done, total: progress.append((done, total)))
    assert [r.provenance["timings"]["batch_size"] for r in res] == [2, 2, 1]
    assert progress[-1] == (6, 6) and len(progress) == 6


def test_provenance_and_scores(tiny_models):
    (res,) = render_batch(tiny_models, SPEC, objective="SHIFT", prompts=["a red cat"], seeds=[5], round_seed=9)
    p = res.provenance
    assert res.image.shape == (16, 16, 3) and res.image.dtype == np.uint8
    assert set(res.scores) == {"itc", "itm", "cap"} and 0 < res.scores["itm"] < 1
    assert p["spec_hash"] == SPEC.spec_hash() and GenerationSpec.from_dict(p["spec"]) == SPEC
    assert (p["objective"], p["prompt"], p["seed"], p["round_seed"]) == ("SHIFT", "a red cat", 5, 9)
    assert p["noise_seed"] == noise_seed(9, "a red cat", 5)
    assert p["checkpoints"] == {"unet:tiny": "random:seed=0", "blip:tiny": "random:seed=0"}
    assert p["torch_version"] == torch.__version__ and p["code_version"] and p["device"].startswith("cpu")
    assert p["timings"]["seconds_per_step"] > 0 and p["timings"]["steps"] == 4
    assert p["timings"]["seconds_total_batch"] >= p["timings"]["sampling_seconds_batch"]
    json.dumps(p)  # JSON-serialisable as stored


def test_spec_and_models_must_agree(tiny_models):
    with pytest.raises(ValueError, match="itm_first_token"):
        render_batch(tiny_models, GenerationSpec.tiny(itm_first_token="[CLS]"), objective="ITC", prompts=["a"], seeds=[0])
    with pytest.raises(ValueError, match="objective"):
        render_batch(tiny_models, SPEC, objective="CLIP", prompts=["a"], seeds=[0])
    with pytest.raises(ValueError, match="one seed per prompt"):
        render_batch(tiny_models, SPEC, objective="ITC", prompts=["a", "b"], seeds=[0])


def test_real_presets_need_files(tmp_path, monkeypatch):
    monkeypatch.delenv("WEIGHTS_DIR", raising=False)
    with pytest.raises(CheckpointError, match="WEIGHTS_DIR"):
        load_models(GenerationSpec(), weights_dir=None, device="cpu")
    with pytest.raises(CheckpointError, match=r"256x256_diffusion_uncond\.pt not found.*fetch-weights"):
        load_models(GenerationSpec(), weights_dir=tmp_path, device="cpu")


def test_render_cli_tiny(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["render", "--prompt", "a red bus", "--objective", "SHIFT", "--seed", "0", "--seed", "1", "--tiny",
               "--set", "respacing=\"3\"", "--out", str(out)])
    assert rc == 0
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 2
    prov = json.loads((out / "provenance.json").read_text())["images"]
    assert [r["file"] for r in prov] == [p.name for p in pngs] and prov[1]["seed"] == 1
    assert prov[0]["spec"]["respacing"] == "3" and prov[0]["objective"] == "SHIFT"
    with Image.open(pngs[0]) as im:
        assert im.size == (16, 16) and not im.info


def test_render_cli_reports_bad_spec_and_missing_weights(tmp_path, capsys):
    with pytest.raises(SystemExit, match="sampler"):
        main(["render", "--prompt", "x", "--objective", "ITC", "--tiny", "--set", "sampler=euler", "--out", str(tmp_path)])
    rc = main(["render", "--prompt", "x", "--objective", "ITC", "--weights", str(tmp_path), "--out", str(tmp_path)])
    assert rc == 2 and "fetch-weights" in capsys.readouterr().err


def test_bf16_render_runs_and_stays_close(tiny_models):
    spec32 = GenerationSpec.tiny(respacing="3")
    spec16 = GenerationSpec.tiny(respacing="3", precision="bf16")
    a = render_batch(tiny_models, spec32, objective="CAP", prompts=["a cat"], seeds=[0])[0]
    b = render_batch(tiny_models, spec16, objective="CAP", prompts=["a cat"], seeds=[0])[0]
    assert a.provenance["spec_hash"] != b.provenance["spec_hash"]
    assert np.abs(a.image.astype(int) - b.image.astype(int)).mean() < 20


def _listing_file(path, listing, wrap=None):
    sd = {k: torch.zeros(1).expand(s) if s else torch.zeros(()) for k, s in listing.items()}
    torch.save({wrap: sd} if wrap else sd, path)


def test_real_presets_load_strictly_and_record_sha256(tmp_path):
    """The real-weights branch end to end, on listing-shaped files of stride-0 tensors (a few kB)."""
    from generation.checkpoints import read_keys_tsv, sha256_file
    from generation.tokenization import tiny_vocab
    from generation.weights import KEYS_DIR

    _listing_file(tmp_path / "256x256_diffusion_uncond.pt", read_keys_tsv(KEYS_DIR / "guided_diffusion_256x256_uncond.keys.tsv"))
    _listing_file(tmp_path / "model_base.pth", read_keys_tsv(KEYS_DIR / "blip_pretrain_base.keys.tsv"), wrap="model")
    vocab = tiny_vocab()
    (tmp_path / "vocab.txt").write_text("\n".join(vocab + [f"[unused{i}]" for i in range(30522 - len(vocab))]) + "\n")
    spec = GenerationSpec(blip_image_size=224)
    models = load_models(spec, weights_dir=tmp_path, device="meta")
    assert models.unet.config.image_size == 256 and models.blip.config.image_size == 224
    assert models.checkpoints == {n: sha256_file(tmp_path / n) for n in ("256x256_diffusion_uncond.pt", "model_base.pth", "vocab.txt")}
    (tmp_path / "model_base.pth").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="verify-weights"):
        load_models(spec, weights_dir=tmp_path, device="meta")


def test_package_import_is_light_and_exposes_loaders():
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, generation; assert 'torch' not in sys.modules; f = generation.load_unet; print(f.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout.strip()
    assert out == "generation.unet"
    import generation
    assert generation.load_blip.__module__ == "generation.blip"
    with pytest.raises(AttributeError):
        generation.render


def test_provenance_carries_the_pilots_diagnostics(tiny_models):
    from generation.pipeline import high_frequency_energy

    spec = GenerationSpec.tiny(respacing="5", range_loss_weight=0.0)
    (res,) = render_batch(tiny_models, spec, objective="ITC", prompts=["a red bus"], seeds=[0])
    diag = res.provenance["diagnostics"]
    assert diag["high_frequency_energy"] == high_frequency_energy(res.image)
    assert diag["x0_range_excess_mean"] >= 0 and diag["x0_range_excess_late"] >= 0
