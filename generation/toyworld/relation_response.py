"""Do guided images respond to relation words? "a A left of a B" against "a A right of a B".

    python -m generation.toyworld.relation_response [--seeds 12]

For two object pairs (red circle / blue square along x, green triangle / yellow circle along y),
renders each relation and its opposite with the same seeds under each condition, reads where the
oracle places the two objects, and counts the seeds in which the stated relation puts B further
in its direction from A than the opposite relation does (two-sided sign test). The noise of an
image depends on its prompt, so the two prompts of a seed do not share noise: the unguided rows
are the test's own null. It measures a tendency, not hits: an image can move its objects the
right way and still fail the oracle's prompt (extra objects, wrong colours).
"""

from __future__ import annotations

import argparse

import numpy as np

PAIRS = (("red circle", "blue square", 0, ("left of", "right of")),
         ("green triangle", "yellow circle", 1, ("above", "below")))
CONDITIONS = ("NONE", "ITC", "ITM", "CAP", "SHIFT")


def measure(models, spec, oracle, seeds: list[int], conditions=CONDITIONS) -> list[dict]:
    from scipy.stats import binomtest

    from generation.toyworld.oracle import SLOT_INDEX
    from generation.toyworld.render import render_condition

    rows = []
    for cond in conditions:
        for a, b, axis, rels in PAIRS:
            ka, kb = (SLOT_INDEX[tuple(reversed(name.split()))] for name in (a, b))  # "red circle" -> ("circle", "red")
            offset = {}
            for rel in rels:
                reading = oracle.read(render_condition(models, spec, cond, [f"a {a} {rel} a {b}"] * len(seeds), seeds))
                offset[rel] = reading.xy[:, kb, axis] - reading.xy[:, ka, axis]  # > 0: B right of / below A
            diff = offset[rels[0]] - offset[rels[1]]
            wins, n = int((diff > 0).sum()), int((diff != 0).sum())
            rows.append({"condition": cond, "pair": f"{a} / {b}", "relations": list(rels),
                         "mean_offset": [float(offset[r].mean()) for r in rels], "wins": wins, "n": n,
                         "p": float(binomtest(wins, n, 0.5).pvalue) if n else 1.0})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--conditions", default=",".join(CONDITIONS),
                    help=f"comma-separated, from {', '.join(CONDITIONS)} and BLEND (each row depends only on its condition)")
    args = ap.parse_args(argv)
    if args.seeds < 1:
        ap.error(f"--seeds {args.seeds}: give at least 1 seed (12 for the README's table)")
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    unknown = [c for c in conditions if c not in (*CONDITIONS, "BLEND")]
    if unknown or not conditions:
        ap.error(f"--conditions {args.conditions!r}: choose from {', '.join(CONDITIONS)}, BLEND")
    import torch

    from generation.pipeline import load_models
    from generation.spec import GenerationSpec
    from generation.toyworld.oracle import load_oracle

    torch.set_num_threads(args.threads)
    spec = GenerationSpec.toy()
    rows = measure(load_models(spec, weights_dir=None, device="cpu"), spec, load_oracle(), list(range(args.seeds)),
                   conditions)
    for r in rows:
        print(f"{r['condition']:5s} {r['pair']:28s} {r['relations'][0]} vs {r['relations'][1]}: "
              f"B-A offset {r['mean_offset'][0]:+.3f} / {r['mean_offset'][1]:+.3f}, "
              f"stated relation further in {r['wins']}/{r['n']} seeds, p = {r['p']:.4f}", flush=True)
    return rows


if __name__ == "__main__":
    main()
