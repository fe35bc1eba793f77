"""Train the toy BLIP with BLIP's three pretraining losses on (scene, caption) pairs.

    python -m generation.toyworld.train_blip              # writes weights/blip.pt + manifest

Same class and heads as the real scorer (:class:`generation.blip.BlipScorer`), small config
(:func:`generation.toyworld.models.toy_blip_config`). Losses, as in BLIP's ``blip_pretrain.py``
without the momentum encoder and queues (batch negatives only):

- ITC: symmetric InfoNCE over the batch with the learnable ``temp``; captions that are equal
  strings count as positives of each other (soft targets), so "a red circle" twice in a batch is
  not a false negative;
- ITM: the ``[ENC]`` multimodal encoder classifies the batch's positives and one hard negative
  per image and per text, sampled in proportion to the ITC similarity (BLIP's mining);
- CAP: the decoder's language-model loss on ``"a picture of " + caption`` with label smoothing
  0.1, the prompt masked (``BLIP_Decoder``).

Images are augmented with noise and blur of random strength, because guidance scores the
model's blurry early predictions x0_hat, not only clean scenes.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from generation.toyworld.models import build_toy_blip, toy_vocab
from generation.toyworld.scenes import render, sample_scene, to_tensor_range


def _blur(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Blend each image with a 5x5-box blurred copy, strength uniform in [0, 1] for half the batch."""
    b = x.shape[0]
    blurred = F.avg_pool2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), 5, stride=1)
    w = torch.rand(b, 1, 1, 1, generator=g) * (torch.rand(b, 1, 1, 1, generator=g) < 0.5)
    return w * blurred + (1 - w) * x


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    x = _blur(x, g)
    sigma = 0.15 * torch.rand(x.shape[0], 1, 1, 1, generator=g)
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(-1, 1)


def blip_losses(model, images: torch.Tensor, texts: list[str], g: torch.Generator) -> dict[str, torch.Tensor]:
    b = images.shape[0]
    emb = model.image_embeds(images)
    text = model.encode_text(texts)
    # ITC
    img_feat = F.normalize(model.vision_proj(emb[:, 0]), dim=-1)
    txt_feat = F.normalize(model.text_proj(model.text_encoder(text.ids, text.mask)[:, 0]), dim=-1)
    with torch.no_grad():
        model.temp.clamp_(0.01, 0.5)
    sim_i2t = img_feat @ txt_feat.t() / model.temp
    same = torch.tensor([[a == b_ for b_ in texts] for a in texts], dtype=torch.float32)
    targets = same / same.sum(1, keepdim=True)
    l_itc = (-(F.log_softmax(sim_i2t, 1) * targets).sum(1).mean()
             - (F.log_softmax(sim_i2t.t(), 1) * targets).sum(1).mean()) / 2
    # ITM with hard negatives mined from ITC similarity (equal captions excluded)
    with torch.no_grad():
        w_i2t = F.softmax(sim_i2t.float(), 1).masked_fill(same > 0, 0) + 1e-6 * (1 - same)
        w_t2i = F.softmax(sim_i2t.t().float(), 1).masked_fill(same > 0, 0) + 1e-6 * (1 - same)
        ok = (1 - same).sum(1) > 0  # an all-equal batch has no negative
        neg_txt = torch.multinomial(w_i2t[ok], 1, generator=g).squeeze(1)
        neg_img = torch.multinomial(w_t2i[ok], 1, generator=g).squeeze(1)
    pos_idx = torch.arange(b)
    ok_idx = pos_idx[ok]
    img_rows = torch.cat([pos_idx, ok_idx, neg_img])
    txt_rows = torch.cat([pos_idx, neg_txt, ok_idx])
    labels = torch.cat([torch.ones(b), torch.zeros(2 * len(ok_idx))]).long()
    h = model.text_encoder(text.itm_ids[txt_rows], text.mask[txt_rows], emb[img_rows])
    l_itm = F.cross_entropy(model.itm_head(h[:, 0]), labels)
    # CAP
    l_cap = model.cap(image_embeds=emb, text=text, label_smoothing=0.1).mean()
    return {"itc": l_itc, "itm": l_itm, "cap": l_cap}


@torch.no_grad()
def evaluate(model, n: int, seed: int) -> dict:
    """Held-out retrieval: does each head prefer an image's true caption over a corrupted one?

    The corrupted caption changes one colour (binding/colour), swaps the relation (position) or
    changes the count (counting); reported per head as the fraction preferring the truth.
    """
    model.eval()
    rng = np.random.default_rng(seed)
    wins = {"itc": [], "itm": [], "cap": []}
    by_kind: dict[str, list[bool]] = {}
    swap = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
    for _ in range(n):
        scene = sample_scene(rng)
        claim = C.caption_claim(scene, rng, p_partial=0.0)
        p = claim.phrases[0]
        if claim.relation and rng.random() < 0.5:
            bad, kind = C.Claim(claim.phrases, swap[claim.relation]), "relation"
        elif p.count > 1 and rng.random() < 0.5:
            bad, kind = C.Claim((dataclasses.replace(p, count=5 - p.count), *claim.phrases[1:]), claim.relation), "count"
        else:
            others = [c for c in ("red", "green", "blue", "yellow", "purple") if c != p.color]
            bad = C.Claim((dataclasses.replace(p, color=others[int(rng.integers(4))]), *claim.phrases[1:]), claim.relation)
            kind = "color"
        if C.claim_true(bad, scene):
            continue
        img = torch.from_numpy(to_tensor_range(render(scene)[None])).expand(2, -1, -1, -1)
        texts = [claim.text(), bad.text()]
        emb = model.image_embeds(img)
        text = model.encode_text(texts)
        itc = model.itc(image_embeds=emb, text=text)
        itm = model.itm(image_embeds=emb, text=text)
        cap = -model.cap(image_embeds=emb, text=text)
        for k, v in (("itc", itc), ("itm", itm), ("cap", cap)):
            wins[k].append(bool(v[0] > v[1]))
            by_kind.setdefault(f"{k}_{kind}", []).append(bool(v[0] > v[1]))
    out = {f"{k}_prefers_true": float(np.mean(v)) for k, v in wins.items()}
    out.update({f"{k}_prefers_true": float(np.mean(v)) for k, v in sorted(by_kind.items())})
    out["n_eval"] = len(wins["itc"])
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--n-train", type=int, default=30000)
    ap.add_argument("--n-eval", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0, help="init, batches, captions and augmentation")
    ap.add_argument("--data-seed", type=int, default=2, help="training scenes (eval uses data-seed + 1000)")
    ap.add_argument("--threads", type=int, default=1, help="1 is fastest on a busy machine (no thread barriers)")
    ap.add_argument("--out", default=str(store.WEIGHTS_DIR))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    data_rng = np.random.default_rng(args.data_seed)
    scenes = [sample_scene(data_rng) for _ in tqdm(range(args.n_train), desc="scenes", leave=False, mininterval=2)]
    X = torch.from_numpy(to_tensor_range(np.stack([render(s) for s in scenes])))
    model = build_toy_blip(seed=args.seed).train()
    g = torch.Generator().manual_seed(args.seed)
    cap_rng = np.random.default_rng(args.seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    bar = tqdm(range(args.steps), desc="train blip", mininterval=2)
    for step in bar:
        idx = torch.randint(len(X), (args.batch_size,), generator=g)
        texts = [C.caption(scenes[i], cap_rng) for i in idx.tolist()]
        losses = blip_losses(model, augment(X[idx], g), texts, g)
        loss = losses["itc"] + losses["itm"] + losses["cap"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 25 == 0:
            bar.set_postfix({k: f"{v.item():.2f}" for k, v in losses.items()})
    metrics = evaluate(model, args.n_eval, args.data_seed + 1000)
    info = {
        "command": "python -m generation.toyworld.train_blip " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "seed": args.seed, "data_seed": args.data_seed, "steps": args.steps, "batch_size": args.batch_size,
        "n_train": args.n_train, "config": dataclasses.asdict(model.config), "vocab": toy_vocab(),
        "params": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(time.time() - t0, 1), "metrics": metrics,
    }
    path = store.save_weights("blip", model.state_dict(), info, Path(args.out))
    print(f"wrote {path}: {metrics}")
    return info


if __name__ == "__main__":
    main()
