"""The shipped oracle: checksum, reading rendered scenes, alignment and realism proxies."""

import json
import shutil

import numpy as np
import pytest

from generation.checkpoints import CheckpointError
from generation.toyworld import captions as C
from generation.toyworld import store
from generation.toyworld.oracle import frechet_distance, load_oracle
from generation.toyworld.scenes import Obj, Scene, render, render_many, sample_scene


@pytest.fixture(scope="module")
def oracle():
    return load_oracle()


def test_weights_load_only_with_their_checksum(tmp_path):
    for name in ("oracle",):
        store.verified_path(name)  # the shipped file matches the manifest
    copy = tmp_path / "w"
    shutil.copytree(store.WEIGHTS_DIR, copy)
    load_oracle(copy)
    data = bytearray((copy / "oracle.pt").read_bytes())
    data[-100] ^= 0xFF
    (copy / "oracle.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_oracle(copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    assert {"sha256", "command", "seed", "data_seed"} <= set(manifest["oracle"])


def test_oracle_reads_held_out_scenes(oracle):
    rng = np.random.default_rng(424242)  # not a training or evaluation seed of train_oracle
    scenes = [sample_scene(rng) for _ in range(300)]
    r = oracle.read(render_many(scenes))
    exact = np.mean([sorted((o.shape, o.color) for o in r.scene(i).objects) ==
                     sorted((o.shape, o.color) for o in s.objects) for i, s in enumerate(scenes)])
    assert exact > 0.85
    truth = [C.caption_claim(s, rng) for s in scenes]
    hits = oracle.hits(None, [c.text() for c in truth], reading=r)
    assert hits.mean() > 0.85


def test_alignment_separates_matching_from_mismatching_prompts(oracle):
    s = Scene((Obj("circle", "red", "big", 0.25, 0.5), Obj("square", "blue", "big", 0.75, 0.5)), (235, 230, 240))
    img = render(s)[None]
    good = ["a red circle", "a blue square", "a red circle left of a blue square", "a blue square and a red circle",
            "a red cirle"]
    bad = ["a green circle", "a red square", "a red circle right of a blue square", "a blue circle and a red square",
           "two red circles", "a triangle"]
    a_good = oracle.alignment(np.repeat(img, len(good), 0), good)
    a_bad = oracle.alignment(np.repeat(img, len(bad), 0), bad)
    assert a_good.min() > 0.7, dict(zip(good, a_good))
    assert a_bad.max() < 0.3, dict(zip(bad, a_bad))
    assert oracle.hits(np.repeat(img, len(good), 0), good).all()
    assert not oracle.hits(np.repeat(img, len(bad), 0), bad).any()


def test_realism_proxies_prefer_rendered_scenes_to_noise(oracle):
    rng = np.random.default_rng(5)
    clean = render_many([sample_scene(rng) for _ in range(200)])
    other = render_many([sample_scene(rng) for _ in range(200)])
    noise = rng.integers(0, 256, size=clean.shape, dtype=np.uint8)
    rc, rn, ro = oracle.read(clean), oracle.read(noise), oracle.read(other)
    assert oracle.realism(None, reading=rc).mean() > oracle.realism(None, reading=rn).mean() + 0.5
    same = frechet_distance(rc.features, ro.features)
    far = frechet_distance(rc.features, rn.features)
    assert far > 10 * same
