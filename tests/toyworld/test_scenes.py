"""The scene world and its grammar: determinism, geometry, truthful captions, parsing."""

import hashlib

import numpy as np
import pytest

from generation.toyworld import captions as C
from generation.toyworld.scenes import (
    COLOR_NAMES, SHAPES, Obj, Scene, render, sample_scene, scene_for_seed,
)


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(a.tobytes()).hexdigest()


def test_same_seed_same_scene_and_pixels():
    a, b = scene_for_seed(123), scene_for_seed(123)
    assert a == b
    assert _digest(render(a)) == _digest(render(b))
    # a stream of scenes from one generator is reproduced by a second generator with that seed
    r1, r2 = np.random.default_rng(7), np.random.default_rng(7)
    s1 = [sample_scene(r1) for _ in range(20)]
    s2 = [sample_scene(r2) for _ in range(20)]
    assert s1 == s2
    assert [_digest(render(s)) for s in s1] == [_digest(render(s)) for s in s2]


def test_different_seeds_differ():
    digests = {_digest(render(scene_for_seed(s))) for s in range(50)}
    assert len(digests) == 50


def test_objects_inside_and_apart():
    rng = np.random.default_rng(0)
    for _ in range(300):
        s = sample_scene(rng)
        assert 1 <= len(s.objects) <= 3
        for i, o in enumerate(s.objects):
            assert o.radius < o.x < 1 - o.radius and o.radius < o.y < 1 - o.radius
            for p in s.objects[i + 1:]:
                assert np.hypot(o.x - p.x, o.y - p.y) > o.radius + p.radius


def test_render_draws_the_objects_colour_where_they_are():
    s = Scene((Obj("square", "red", "big", 0.3, 0.5), Obj("circle", "blue", "big", 0.75, 0.5)), (240, 240, 240))
    img = render(s).astype(int)
    assert img.shape == (32, 32, 3) and img.dtype == np.int64
    red, blue = img[16, int(0.3 * 32)], img[16, int(0.75 * 32)]
    assert red[0] > 180 and red[2] < 80
    assert blue[2] > 180 and blue[0] < 80
    assert (img[2, 2] > 230).all()  # background corner


def test_generated_captions_are_true_and_parse_back():
    rng = np.random.default_rng(1)
    kinds = set()
    for _ in range(600):
        s = sample_scene(rng)
        claim = C.caption_claim(s, rng)
        assert C.claim_true(claim, s), (claim.text(), s)
        assert C.parse(claim.text()) == claim
        kinds.add("relation" if claim.relation else "count" if max(p.count for p in claim.phrases) > 1
                  else "and" if len(claim.phrases) > 1 else "single")
    assert kinds == {"relation", "count", "and", "single"}


def test_claims_can_be_false():
    s = Scene((Obj("circle", "red", "small", 0.8, 0.5), Obj("square", "blue", "small", 0.2, 0.5)), (255, 255, 255))
    assert C.claim_true(C.parse("a red circle right of a blue square"), s)
    assert not C.claim_true(C.parse("a red circle left of a blue square"), s)
    assert not C.claim_true(C.parse("a blue circle and a red square"), s)  # binding swapped
    assert not C.claim_true(C.parse("two red circles"), s)
    assert C.claim_true(C.parse("a circle"), s)
    assert not C.claim_true(C.parse("a big circle"), s)


def test_misspellings_parse_to_the_intended_words():
    assert C.parse("a red cirle").text() == "a red circle"
    assert C.parse("a yelow circle").text() == "a yellow circle"
    assert C.parse("two grean triangels").text() == "two green triangles"
    rng = np.random.default_rng(3)
    for _ in range(200):
        text = C.caption_claim(sample_scene(rng), rng).text()
        assert C.parse(C.misspell(text, rng)).text() == text
    with pytest.raises(ValueError):
        C.parse("a photograph of a zebra")


def test_prompt_set_file_matches_the_code_and_covers_drawbench_kinds():
    assert C.PROMPTS_TSV.read_text() == C.prompts_tsv_text()
    cats = {c for _, c in C.TOY_PROMPTS}
    assert cats == {"Objects", "Colors", "Counting", "Positional", "Binding", "Misspellings"}
    for prompt, _ in C.TOY_PROMPTS:
        claim = C.parse(prompt)
        assert all(p.shape in SHAPES and p.color in (None, *COLOR_NAMES) for p in claim.phrases)
