"""Train the oracle on rendered scenes (one command, seeded, a few minutes on 2 CPU cores).

    python -m generation.toyworld.train_oracle            # writes weights/oracle.pt + manifest

Data: ``--n-train`` scenes from ``sample_scene`` with ``--data-seed``, plus 5% empty backgrounds
and 5% smooth-noise images (all counts 0: "no object of the world here"). Augmentation, drawn
from the training generator: horizontal flips (labels mirrored), Gaussian noise, blur and a
small brightness/contrast jitter, so the oracle tolerates the softness of generated samples.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from generation.toyworld import captions as C
from generation.toyworld import store
from generation.toyworld.oracle import Oracle, OracleConfig, OracleNet, scene_targets
from generation.toyworld.scenes import Scene, random_background, render, sample_scene, to_tensor_range


def make_dataset(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[Scene]]:
    """``(images uint8 (n,32,32,3), counts (n,15), xy (n,15,2), radius (n,15), scenes)``."""
    rng = np.random.default_rng(seed)
    images, counts, xys, rads, scenes = [], [], [], [], []
    for _ in tqdm(range(n), desc=f"render {n} scenes", leave=False, mininterval=2):
        u = rng.random()
        if u < 0.05:  # empty background
            bg, tex, tseed = random_background(rng)
            scene = Scene((), bg, tex, tseed)
            img = render(scene)
        elif u < 0.10:  # smooth colour noise, no object
            scene = Scene((), (0, 0, 0))
            coarse = rng.uniform(0, 255, size=(int(rng.integers(2, 9)),) * 2 + (3,)).astype(np.uint8)
            from PIL import Image

            img = np.asarray(Image.fromarray(coarse).resize((32, 32), Image.BICUBIC))
        else:
            scene = sample_scene(rng)
            img = render(scene)
        c, xy, r = scene_targets(scene)
        images.append(img), counts.append(c), xys.append(xy), rads.append(r), scenes.append(scene)
    return np.stack(images), np.stack(counts), np.stack(xys), np.stack(rads), scenes


def augment(x: torch.Tensor, xy: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    b = x.shape[0]
    flip = torch.rand(b, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    xy = xy.clone()
    xy[flip, :, 0] = 1 - xy[flip, :, 0]
    # blur a third of the batch with a 3x3 kernel of random strength
    blur = torch.rand(b, generator=g) < 0.33
    if blur.any():
        k = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=x.dtype) / 16
        blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k.expand(3, 1, 3, 3), groups=3)
        w = torch.rand(b, 1, 1, 1, generator=g)
        x = torch.where(blur[:, None, None, None], w * blurred + (1 - w) * x, x)
    gain = 1 + 0.1 * (torch.rand(b, 1, 1, 1, generator=g) - 0.5)
    bias = 0.1 * (torch.rand(b, 1, 1, 1, generator=g) - 0.5)
    sigma = 0.12 * torch.rand(b, 1, 1, 1, generator=g)
    x = x * gain + bias + sigma * torch.randn(x.shape, generator=g)
    return x.clamp(-1, 1), xy


def loss_fn(net, x, counts, xy, rad):
    logits, pxy, prad, _ = net(x)
    present = (counts > 0).float()
    l_count = F.cross_entropy(logits.flatten(0, 1), counts.flatten())
    denom = present.sum().clamp(min=1)
    l_xy = (((pxy - xy) ** 2).sum(-1) * present).sum() / denom
    l_rad = (((prad - rad) ** 2) * present).sum() / denom
    return l_count + 20 * l_xy + 100 * l_rad, logits


@torch.no_grad()
def evaluate(oracle: Oracle, n: int, seed: int) -> dict:
    """Held-out accuracy: exact readings, slot counts, positions, and claims true vs false."""
    images, counts, xy, rad, scenes = make_dataset(n, seed)
    r = oracle.read(images)
    pred = r.probs.argmax(-1)
    present = counts > 0
    rng = np.random.default_rng(seed + 1)
    true_hits, false_hits, rel_true, rel_n = [], [], [], 0
    for i, s in enumerate(scenes):
        if not s.objects:
            continue
        claim = C.caption_claim(s, rng)
        true_hits.append(C.claim_true(claim, r.scene(i)))
        if claim.relation:
            rel_true.append(true_hits[-1])
        # a false claim: the true one with one phrase's colour changed
        p = claim.phrases[0]
        other = [c for c in ("red", "green", "blue", "yellow", "purple") if c != p.color]
        bad = C.Claim((C.NounPhrase(p.shape, other[int(rng.integers(len(other)))], p.size, p.count),
                       *claim.phrases[1:]), claim.relation)
        if not C.claim_true(bad, s):
            false_hits.append(C.claim_true(bad, r.scene(i)))
    conf = oracle.confidence(None, reading=r)
    return {
        "n_eval": n,
        "exact_reading_acc": float((pred == counts).all(-1).mean()),
        "slot_count_acc": float((pred == counts).mean()),
        "present_slot_count_acc": float((pred == counts)[present].mean()),
        "xy_mae": float(np.abs(r.xy - xy)[present].mean()),
        "true_caption_hit_rate": float(np.mean(true_hits)),
        "relation_caption_hit_rate": float(np.mean(rel_true)) if rel_true else None,
        "false_caption_hit_rate": float(np.mean(false_hits)),
        "confidence_mean": float(conf.mean()),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--n-train", type=int, default=20000)
    ap.add_argument("--n-eval", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0, help="init, batches and augmentation")
    ap.add_argument("--data-seed", type=int, default=1, help="training scenes (eval uses data-seed + 1000)")
    ap.add_argument("--threads", type=int, default=1, help="1 is fastest on a busy machine (no thread barriers)")
    ap.add_argument("--out", default=str(store.WEIGHTS_DIR), help="weights folder (manifest is updated)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    images, counts, xy, rad, _ = make_dataset(args.n_train, args.data_seed)
    X = torch.from_numpy(to_tensor_range(images))
    counts_t, xy_t, rad_t = torch.from_numpy(counts), torch.from_numpy(xy), torch.from_numpy(rad)
    g = torch.Generator().manual_seed(args.seed)
    config = OracleConfig()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        net = OracleNet(config)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)
    bar = tqdm(range(args.steps), desc="train oracle", mininterval=2)
    for step in bar:
        idx = torch.randint(len(X), (args.batch_size,), generator=g)
        x, bxy = augment(X[idx], xy_t[idx], g)
        loss, _ = loss_fn(net, x, counts_t[idx], bxy, rad_t[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    metrics = evaluate(Oracle(net), args.n_eval, args.data_seed + 1000)
    info = {
        "command": "python -m generation.toyworld.train_oracle " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "seed": args.seed, "data_seed": args.data_seed, "steps": args.steps, "batch_size": args.batch_size,
        "n_train": args.n_train, "config": config.to_dict(),
        "params": sum(p.numel() for p in net.parameters()),
        "train_seconds": round(time.time() - t0, 1), "metrics": metrics,
    }
    path = store.save_weights("oracle", net.state_dict(), info, Path(args.out))
    print(f"wrote {path}: {metrics}")
    return info


if __name__ == "__main__":
    main()
