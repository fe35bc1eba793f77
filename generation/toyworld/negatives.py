"""Captions that differ from a true one only in structure: the toy BLIP's hard negatives and probes.

A corruption keeps every word of a true :class:`~generation.toyworld.captions.Claim` but changes
what it says about the scene:

- ``color``: one phrase gets another colour (a word-level change, the easy case);
- ``count``: a counted phrase gets another number ("two" <-> "three", "a" -> "two");
- ``relation``: the relation word is swapped ("left of" <-> "right of", "above" <-> "below");
- ``order``: the two related phrases change places (same words, other meaning);
- ``binding``: the colours of two phrases are swapped (same words, other objects).

``relation``, ``order`` and ``binding`` keep the bag of words, so a model that reads only which
words occur cannot tell the corrupted caption from the true one. Every corruption is checked
false against the scene (:func:`~generation.toyworld.captions.claim_true`).

:func:`training_claim` is the training caption distribution (relations between two objects of
any scene, as well as the grammar's full descriptions); :func:`probe` draws held-out
``(scene, true, corrupted)`` triples of one kind, for the manifest's metrics and the tests.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from generation.toyworld import captions as C
from generation.toyworld.scenes import COLOR_NAMES, Scene, sample_scene

KINDS = ("color", "count", "relation", "order", "binding")
# The manifest's metric kinds: "order" is a relation swap by other means, reported with it in training only.
PROBE_KINDS = ("color", "count", "relation", "binding")
SWAP = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def corrupt(claim: C.Claim, scene: Scene, kind: str, rng: np.random.Generator) -> C.Claim | None:
    """``claim`` changed in one way of ``kind``, or None when it has no such change that is false."""
    ps = claim.phrases
    if kind in ("relation", "order"):
        if not claim.relation:
            return None
        bad = C.Claim(ps, SWAP[claim.relation]) if kind == "relation" else C.Claim((ps[1], ps[0]), claim.relation)
    elif kind == "binding":
        pairs = [(i, j) for i in range(len(ps)) for j in range(i + 1, len(ps))
                 if ps[i].color and ps[j].color and ps[i].color != ps[j].color]
        if not pairs:
            return None
        i, j = pairs[int(rng.integers(len(pairs)))]
        new = list(ps)
        new[i], new[j] = dataclasses.replace(ps[i], color=ps[j].color), dataclasses.replace(ps[j], color=ps[i].color)
        bad = C.Claim(tuple(new), claim.relation)
    elif kind == "count":
        i = int(rng.integers(len(ps)))
        if claim.relation and ps[i].count == 1:
            return None  # a related phrase stays singular in the grammar
        options = [n for n in (2, 3) if n != ps[i].count]
        new = list(ps)
        new[i] = dataclasses.replace(ps[i], count=options[int(rng.integers(len(options)))])
        bad = C.Claim(tuple(new), claim.relation)
    elif kind == "color":
        i = int(rng.integers(len(ps)))
        others = [c for c in COLOR_NAMES if c != ps[i].color]
        new = list(ps)
        new[i] = dataclasses.replace(ps[i], color=others[int(rng.integers(len(others)))])
        bad = C.Claim(tuple(new), claim.relation)
    else:
        raise ValueError(f"unknown corruption {kind!r}; kinds are {KINDS}")
    return None if C.claim_true(bad, scene) else bad


def hard_negative(claim: C.Claim, scene: Scene, rng: np.random.Generator, kinds=KINDS) -> C.Claim | None:
    """The first false corruption of ``claim`` over ``kinds`` in a random order (None if none is)."""
    for k in rng.permutation(len(kinds)):
        bad = corrupt(claim, scene, kinds[int(k)], rng)
        if bad is not None:
            return bad
    return None


def hard_negatives(claim: C.Claim, scene: Scene, rng: np.random.Generator, k: int, kinds=KINDS) -> list[C.Claim]:
    """Up to ``k`` false corruptions of ``claim`` of different kinds, kinds in a random order.

    ``k == 1`` is :func:`hard_negative` (the same draws), so older training commands replay.
    """
    if k == 1:
        bad = hard_negative(claim, scene, rng, kinds)
        return [] if bad is None else [bad]
    out: list[C.Claim] = []
    for i in rng.permutation(len(kinds)):
        bad = corrupt(claim, scene, kinds[int(i)], rng)
        if bad is not None and bad not in out:
            out.append(bad)
            if len(out) == k:
                break
    return out


def related_pair(a, b) -> str | None:
    """The relation of ``b`` to ``a`` when they are of different kinds and one clearly holds, else None."""
    return C._relation_between(a, b) if (a.shape, a.color) != (b.shape, b.color) else None


def relation_claim(scene: Scene, rng: np.random.Generator, *, p_size: float = 0.3) -> C.Claim | None:
    """A true relation between two objects of different kinds in ``scene`` (any number of objects)."""
    objs = scene.objects
    pairs = [(a, b) for a in objs for b in objs if related_pair(a, b) is not None]
    if not pairs:
        return None
    a, b = pairs[int(rng.integers(len(pairs)))]
    phrase = lambda o: C.NounPhrase(o.shape, o.color, o.size if rng.random() < p_size else None, 1)  # noqa: E731
    claim = C.Claim((phrase(a), phrase(b)), C._relation_between(a, b))
    return claim if C.claim_true(claim, scene) else None


def training_claim(scene: Scene, rng: np.random.Generator, *, p_pair_relation: float = 0.35) -> C.Claim:
    """A true training claim: a relation between two objects with ``p_pair_relation`` when one
    holds, else the grammar's caption (:func:`~generation.toyworld.captions.caption_claim`)."""
    if rng.random() < p_pair_relation:
        claim = relation_claim(scene, rng)
        if claim is not None:
            return claim
    return C.caption_claim(scene, rng)


def probe(kind: str, rng: np.random.Generator) -> tuple[Scene, C.Claim, C.Claim]:
    """A held-out ``(scene, true claim, corrupted claim)`` of ``kind``: scenes from the world's own
    distribution, full descriptions (no partial ones), drawn until the corruption applies."""
    while True:
        scene = sample_scene(rng)
        claim = C.caption_claim(scene, rng, p_partial=0.0)
        bad = corrupt(claim, scene, kind, rng)
        if bad is not None:
            return scene, claim, bad
