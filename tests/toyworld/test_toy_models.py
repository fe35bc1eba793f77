"""The shipped toy UNet and BLIP: checksums, strict loading through the toy presets, and guidance
that measurably works (oracle alignment of guided vs unguided samples with the same seeds)."""

import json
import shutil

import numpy as np
import pytest

from generation.checkpoints import CheckpointError
from generation.pipeline import load_models, render_batch
from generation.spec import GenerationSpec
from generation.toyworld import store
from generation.toyworld.models import load_toy_blip, load_toy_unet
from generation.toyworld.oracle import load_oracle
from generation.toyworld.paper import sign_test
from generation.toyworld.render import render_unguided

# Single objects and colours: what a 32x32 toy model renders reliably; 6 prompts x 4 seeds.
PROMPTS = ["a red circle", "a blue square", "a green triangle", "a yellow circle", "a purple square", "a blue triangle"]
SEEDS = [0, 1, 2, 3]
SPEC = GenerationSpec.toy(respacing="25", batch_size=24)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # fastest on small shared machines


@pytest.fixture(scope="module")
def models():
    return load_models(SPEC, weights_dir=None, device="cpu")


@pytest.fixture(scope="module")
def oracle():
    return load_oracle()


def test_manifest_lists_every_shipped_file_with_its_command():
    manifest = store.read_manifest()
    assert set(manifest) == {"oracle", "unet", "blip"}
    total = 0
    for name, info in manifest.items():
        path = store.verified_path(name)
        total += path.stat().st_size
        assert info["command"].startswith(f"python -m generation.toyworld.train_{name}")
        assert "--out" not in info["command"]
        assert isinstance(info["seed"], int) and isinstance(info["data_seed"], int)
    assert total < 8 * 2**20  # a few MB in the repository


@pytest.mark.parametrize("name,loader", [("unet", load_toy_unet), ("blip", load_toy_blip)])
def test_corrupt_weights_are_refused(tmp_path, name, loader):
    copy = tmp_path / "w"
    shutil.copytree(store.WEIGHTS_DIR, copy)
    loader(copy)
    f = copy / f"{name}.pt"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        loader(copy)


def test_toy_presets_load_with_provenance(models):
    assert models.unet.config.image_size == 32 and models.blip.config.image_size == 32
    manifest = store.read_manifest()
    assert models.checkpoints == {
        "toyworld/unet.pt": manifest["unet"]["sha256"], "toyworld/blip.pt": manifest["blip"]["sha256"],
    }
    assert all(not p.requires_grad for p in models.unet.parameters())


def test_render_is_deterministic_and_paired(models):
    spec = GenerationSpec.toy(respacing="5", batch_size=2)
    a = render_batch(models, spec, objective="SHIFT", prompts=["a red circle", "a blue square"], seeds=[0, 1])
    b = render_batch(models, spec, objective="SHIFT", prompts=["a blue square"], seeds=[1])
    # batch composition changes no image beyond float rounding (CPU kernels sum in batch-dependent
    # order; seen: at most 1 level in 0.1-1.5% of the pixel values, more with self-recurrence 3,
    # which gives rounding three guided passes per step to flip a level); a pairing bug (another
    # image's noise) changes values by tens of levels
    diff = np.abs(a[1].image.astype(int) - b[0].image.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.05
    assert a[0].provenance["checkpoints"]["toyworld/unet.pt"] == store.read_manifest()["unet"]["sha256"]


def test_guidance_raises_oracle_alignment_over_unguided_with_the_same_seeds(models, oracle):
    prompts = [p for p in PROMPTS for _ in SEEDS]
    seeds = [s for _ in PROMPTS for s in SEEDS]
    unguided = render_unguided(models, SPEC, prompts, seeds)
    a0 = oracle.alignment(unguided, prompts)
    results = {}
    for objective in ("ITC", "CAP", "SHIFT"):
        imgs = np.stack([r.image for r in render_batch(models, SPEC, objective=objective, prompts=prompts, seeds=seeds)])
        a1 = oracle.alignment(imgs, prompts)
        results[objective] = (sign_test(a1, a0), float(a1.mean()), float(a0.mean()))
    for objective, (st, m1, m0) in results.items():
        # paired sign test, one image per (prompt, seed): guided wins significantly more pairs
        assert st["wins"] > st["losses"] and st["p"] < 0.01, (objective, results)
        assert m1 > m0 + 0.2, (objective, results)


# A held-out seed the training run never used (it evaluates on data_seed + 1000).
FRESH_SEED = 424242
N_FRESH = 600


def _binomial_tolerance(p: float, n_fresh: int, n_manifest: int, z: float = 4.0) -> float:
    """``z`` standard errors of the difference of two independent binomial proportions near ``p``.

    z = 4: a two-sided false alarm of 6e-5 per figure (12 figures here), and still 5-10 points
    at these sample sizes, so a figure off by more than that (other weights, other probes) fails.
    """
    p = min(max(p, 0.05), 0.95)  # near 0 or 1 the plug-in variance is too optimistic
    return z * float(np.sqrt(p * (1 - p) * (1 / n_fresh + 1 / n_manifest)))


@pytest.fixture(scope="module")
def fresh_preferences():
    from generation.toyworld.train_blip import preferences

    return preferences(load_toy_blip(), N_FRESH, FRESH_SEED)


def test_blip_loads_strictly_with_the_manifests_sha256():
    from generation.checkpoints import sha256_file

    info = store.read_manifest()["blip"]
    assert sha256_file(store.WEIGHTS_DIR / info["file"]) == info["sha256"]
    model = load_toy_blip()  # strict: a missing or extra key raises
    sd = model.state_dict()
    assert set(sd) == set(store.load_state_dict("blip")[0])


@pytest.mark.parametrize("head", ["itc", "itm", "cap"])
@pytest.mark.parametrize("kind", ["relation", "binding", "color", "count"])
def test_manifest_preferences_hold_on_a_fresh_held_out_sample(fresh_preferences, head, kind):
    info = store.read_manifest()["blip"]
    key = f"{head}_{kind}_prefers_true"
    stated, fresh = info["metrics"][key], fresh_preferences[key]
    tol = _binomial_tolerance(stated, N_FRESH, info["metrics"]["n_eval"])
    assert abs(fresh - stated) <= tol, (key, stated, fresh, tol)
