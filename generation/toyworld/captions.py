"""The toy world's caption grammar: generation from scenes, parsing back, misspellings, prompts.

Grammar (all lowercase; ``[x]`` optional)::

    caption  := np | np " and " np [" and " np] | np " " rel " " np
    np       := det [size " "] [colour " "] noun
    det      := "a" | "two" | "three"            (noun plural after two/three)
    rel      := "left of" | "right of" | "above" | "below"

It covers what DrawBench probes at this scale: single objects, colours, counting ("two red
circles"), spatial relations ("a red circle left of a blue square"), attribute binding ("a blue
square and a red circle") and misspellings ("a red cirle"). :func:`parse` reads a caption back
into a :class:`Claim` (tolerating misspellings by nearest vocabulary word) so the oracle can check
any prompt of the grammar against an image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from generation.toyworld.scenes import COLOR_NAMES, SHAPES, SIZE_NAMES, Scene

RELATIONS = ("left of", "right of", "above", "below")
NUMBERS = {"a": 1, "one": 1, "two": 2, "three": 3}
COUNT_WORDS = {1: "a", 2: "two", 3: "three"}
PLURAL = {s: s + "s" for s in SHAPES}
# Every word the grammar can produce; the tiny BLIP's vocabulary is these plus characters.
WORDS = tuple(
    dict.fromkeys(
        ["a", "one", "two", "three", "and", "left", "right", "of", "above", "below", "picture"]
        + list(SIZE_NAMES) + list(COLOR_NAMES) + list(SHAPES) + list(PLURAL.values())
    )
)
# A relation is stated only when the centres differ by this much along its axis (side fractions),
# and more along that axis than the other one.
RELATION_MARGIN = 0.12

PROMPTS_TSV = Path(__file__).with_name("toyworld_prompts.tsv")


@dataclass(frozen=True)
class NounPhrase:
    shape: str
    color: str | None = None
    size: str | None = None
    count: int = 1

    def text(self) -> str:
        words = [COUNT_WORDS[self.count]]
        if self.size:
            words.append(self.size)
        if self.color:
            words.append(self.color)
        words.append(self.shape if self.count == 1 else PLURAL[self.shape])
        return " ".join(words)


@dataclass(frozen=True)
class Claim:
    """What a caption asserts: noun phrases joined by "and", or two related by ``relation``."""

    phrases: tuple[NounPhrase, ...]
    relation: str | None = None  # one of RELATIONS; then phrases == (subject, object)

    def text(self) -> str:
        if self.relation:
            return f"{self.phrases[0].text()} {self.relation} {self.phrases[1].text()}"
        return " and ".join(p.text() for p in self.phrases)


# ------------------------------------------------------------------------------------------------
# Truth of a claim about a scene (ground truth; the oracle's version works on its predictions)


def relation_holds(relation: str, ax: float, ay: float, bx: float, by: float, margin: float = RELATION_MARGIN) -> bool:
    dx, dy = bx - ax, by - ay  # b relative to a
    if relation == "left of":
        return dx > margin and abs(dx) > abs(dy)
    if relation == "right of":
        return -dx > margin and abs(dx) > abs(dy)
    if relation == "above":
        return dy > margin and abs(dy) > abs(dx)
    if relation == "below":
        return -dy > margin and abs(dy) > abs(dx)
    raise ValueError(f"unknown relation {relation!r}; relations are {RELATIONS}")


def _matches(np_: NounPhrase, o) -> bool:
    return o.shape == np_.shape and np_.color in (None, o.color) and np_.size in (None, o.size)


def claim_true(claim: Claim, scene: Scene) -> bool:
    """Ground truth: counting phrases need exactly ``count`` matches, ``a`` at least one."""
    for p in claim.phrases:
        n = sum(_matches(p, o) for o in scene.objects)
        if (p.count == 1 and n < 1) or (p.count > 1 and n != p.count):
            return False
    if claim.relation:
        a, b = claim.phrases
        return any(
            relation_holds(claim.relation, oa.x, oa.y, ob.x, ob.y)
            for oa in scene.objects if _matches(a, oa)
            for ob in scene.objects if _matches(b, ob) and ob is not oa
        )
    return True


# ------------------------------------------------------------------------------------------------
# Captions of a scene (training data)


def _groups(scene: Scene) -> list[list]:
    groups: dict[tuple[str, str], list] = {}
    for o in scene.objects:
        groups.setdefault((o.shape, o.color), []).append(o)
    return list(groups.values())


def _phrase(objs: list, scene: Scene, rng: np.random.Generator, *, p_size: float, p_drop_color: float) -> NounPhrase:
    sizes = {o.size for o in objs}
    size = next(iter(sizes)) if len(sizes) == 1 and rng.random() < p_size else None
    # The colour may go only when no other object has this shape (the count stays exact).
    alone = scene.count(objs[0].shape) == len(objs)
    color = None if alone and rng.random() < p_drop_color else objs[0].color
    return NounPhrase(objs[0].shape, color, size, len(objs))


def _relation_between(a, b) -> str | None:
    for rel in RELATIONS:
        if relation_holds(rel, a.x, a.y, b.x, b.y):
            return rel
    return None


def caption_claim(scene: Scene, rng: np.random.Generator, *, p_partial: float = 0.15, p_relation: float = 0.5) -> Claim:
    """A true claim about ``scene``: usually a full description, sometimes one object of it.

    Two single objects are put in a relation with probability ``p_relation`` when one clearly
    holds (the draw is made either way, so the generator's stream does not depend on it).
    """
    groups = _groups(scene)
    order = rng.permutation(len(groups))
    groups = [groups[i] for i in order]
    if len(groups) > 1 and rng.random() < p_partial:
        groups = groups[:1]
        # a partial description of a counting group keeps the exact count (counting stays exact)
    phrases = [_phrase(g, scene, rng, p_size=0.3, p_drop_color=0.1) for g in groups]
    if len(groups) == 2 and all(len(g) == 1 for g in groups) and rng.random() < p_relation:
        rel = _relation_between(groups[0][0], groups[1][0])
        if rel is not None:
            return Claim(tuple(phrases), rel)
    return Claim(tuple(phrases))


def misspell(text: str, rng: np.random.Generator) -> str:
    """One content word of ``text`` with a dropped, doubled or swapped letter (DrawBench style)."""
    words = text.split(" ")
    content = [i for i, w in enumerate(words) if len(w) >= 4 and w not in ("left", "right", "above", "below")]
    if not content:
        return text
    i = content[int(rng.integers(len(content)))]
    w = list(words[i])
    j = int(rng.integers(1, len(w) - 1))
    op = int(rng.integers(3))
    if op == 0:
        del w[j]
    elif op == 1:
        w.insert(j, w[j])
    else:
        w[j], w[j + 1] = w[j + 1], w[j]
    words[i] = "".join(w)
    return " ".join(words)


def caption(scene: Scene, rng: np.random.Generator, *, p_misspell: float = 0.05) -> str:
    """A training caption for ``scene`` (a few deliberately misspelled)."""
    text = caption_claim(scene, rng).text()
    return misspell(text, rng) if rng.random() < p_misspell else text


# ------------------------------------------------------------------------------------------------
# Parsing


def _edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _correct(word: str) -> str:
    if word in WORDS:
        return word
    # Misspellings keep the first letter ("yelow" is yellow, not below).
    best = min(WORDS, key=lambda w: (_edit_distance(word, w), w[0] != word[0], w))
    if _edit_distance(word, best) > 2:
        raise ValueError(f"unknown word {word!r} (not in the toy grammar)")
    return best


def _parse_np(words: list[str]) -> NounPhrase:
    if not words or words[0] not in NUMBERS:
        raise ValueError(f"a noun phrase starts with a/two/three: {' '.join(words)!r}")
    count, rest = NUMBERS[words[0]], words[1:]
    size = rest.pop(0) if rest and rest[0] in SIZE_NAMES else None
    color = rest.pop(0) if rest and rest[0] in COLOR_NAMES else None
    if len(rest) != 1:
        raise ValueError(f"cannot read the noun phrase {' '.join(words)!r}")
    noun = rest[0]
    shape = noun[:-1] if noun.endswith("s") and noun[:-1] in SHAPES else noun
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {noun!r}")
    return NounPhrase(shape, color, size, count)


def parse(text: str) -> Claim:
    """Read a caption of the grammar (misspellings corrected to the nearest word) into a Claim."""
    words = [_correct(w) for w in text.lower().replace(",", " ").replace(".", " ").split()]
    joined = " ".join(words)
    for rel in RELATIONS:
        key = f" {rel} "
        if key in f" {joined} ":
            left, right = f" {joined} ".split(key, 1)
            return Claim((_parse_np(left.split()), _parse_np(right.split())), rel)
    parts, cur = [], []
    for w in words:
        if w == "and":
            parts.append(cur)
            cur = []
        else:
            cur.append(w)
    parts.append(cur)
    return Claim(tuple(_parse_np(p) for p in parts))


# ------------------------------------------------------------------------------------------------
# The fixed prompt set of toy rounds (also shipped as toyworld_prompts.tsv)

TOY_PROMPTS: tuple[tuple[str, str], ...] = (
    # The first four (the demo's default prompt_limit) differ in colours, so a person tells their
    # images apart at a glance; the first six span all categories.
    ("a green triangle", "Colors"),
    ("a blue square right of a purple triangle", "Positional"),
    ("two red circles", "Counting"),
    ("a yellow triangle and a blue circle", "Binding"),
    ("a circle", "Objects"),
    ("a red cirle", "Misspellings"),
    ("a red circle", "Colors"),
    ("a red circle left of a blue square", "Positional"),
    ("a blue square and a red circle", "Binding"),
    ("a blue square", "Colors"),
    ("a green triangle above a yellow circle", "Positional"),
    ("three blue squares", "Counting"),
    ("a red square and a blue circle", "Binding"),
    ("a square", "Objects"),
    ("a bleu square", "Misspellings"),
    ("two green triangles", "Counting"),
    ("a green circle and a purple triangle", "Binding"),
    ("a triangle", "Objects"),
    ("two grean triangels", "Misspellings"),
    ("a yellow circle", "Colors"),
    ("a yellow square below a red triangle", "Positional"),
    ("three yellow circles", "Counting"),
    ("a big circle", "Objects"),
    ("a yelow circle", "Misspellings"),
    ("a purple square", "Colors"),
    ("a blue triangle", "Colors"),
)


def prompts_tsv_text() -> str:
    lines = ["prompt\tcategory"] + [f"{p}\t{c}" for p, c in TOY_PROMPTS]
    return "\n".join(lines) + "\n"
