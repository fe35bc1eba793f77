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

from generation.blip import BlipConfig
from generation.toyworld import captions as C
from generation.toyworld import negatives as N
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


def blip_losses(model, images: torch.Tensor, texts: list[str], g: torch.Generator,
                hard: list[tuple[int, str]] | None = None) -> dict[str, torch.Tensor]:
    """ITC, ITM and CAP losses of a batch; ``hard`` lists ``(image index, structural negative caption)``.

    ``g`` is a CPU generator (the draws are the same on every device); tensors follow ``images``.
    """
    b, dev = images.shape[0], images.device
    hard = hard or []
    hard_idx = torch.tensor([i for i, _ in hard], dtype=torch.long)
    emb = model.image_embeds(images)
    # one tokenisation for positives and hard negatives, so their rows share a padded length
    every = model.encode_text(texts + [t for _, t in hard])
    text = dataclasses.replace(every, texts=texts, ids=every.ids[:b], mask=every.mask[:b], itm_ids=every.itm_ids[:b],
                               cap_ids=every.cap_ids[:b], cap_mask=every.cap_mask[:b], cap_labels=every.cap_labels[:b])
    # ITC: in-batch negatives on [CLS] features only (no hard negatives: its blind spots are its own)
    img_feat = F.normalize(model.vision_proj(emb[:, 0]), dim=-1)
    txt_feat = F.normalize(model.text_proj(model.text_encoder(text.ids, text.mask)[:, 0]), dim=-1)
    with torch.no_grad():
        model.temp.clamp_(0.01, 0.5)
    sim_i2t = img_feat @ txt_feat.t() / model.temp
    same = torch.tensor([[a == b_ for b_ in texts] for a in texts], dtype=torch.float32, device=dev)
    targets = same / same.sum(1, keepdim=True)
    l_itc = (-(F.log_softmax(sim_i2t, 1) * targets).sum(1).mean()
             - (F.log_softmax(sim_i2t.t(), 1) * targets).sum(1).mean()) / 2
    # ITM: batch negatives mined from ITC similarity (equal captions excluded), as BLIP, plus each
    # image's structural negative (same words or nearly, other meaning)
    with torch.no_grad():
        w_i2t = F.softmax(sim_i2t.float(), 1).masked_fill(same > 0, 0) + 1e-6 * (1 - same)
        w_t2i = F.softmax(sim_i2t.t().float(), 1).masked_fill(same > 0, 0) + 1e-6 * (1 - same)
        ok = ((1 - same).sum(1) > 0).cpu()  # an all-equal batch has no negative
        neg_txt = torch.multinomial(w_i2t.cpu()[ok], 1, generator=g).squeeze(1)
        neg_img = torch.multinomial(w_t2i.cpu()[ok], 1, generator=g).squeeze(1)
    pos_idx = torch.arange(b)
    ok_idx = pos_idx[ok]
    img_rows = torch.cat([pos_idx, ok_idx, neg_img, hard_idx]).to(dev)
    txt_rows = torch.cat([pos_idx, neg_txt, ok_idx, b + torch.arange(len(hard_idx))]).to(dev)
    labels = torch.cat([torch.ones(b), torch.zeros(2 * len(ok_idx) + len(hard_idx))]).long().to(dev)
    h = model.text_encoder(every.itm_ids[txt_rows], every.mask[txt_rows], emb[img_rows])
    l_itm = F.cross_entropy(model.itm_head(h[:, 0]), labels)
    # CAP
    l_cap = model.cap(image_embeds=emb, text=text, label_smoothing=0.1).mean()
    return {"itc": l_itc, "itm": l_itm, "cap": l_cap}


@torch.no_grad()
def preferences(model, n_per_kind: int, seed: int, kinds=N.PROBE_KINDS, batch: int = 100) -> dict:
    """Held-out: how often each head prefers an image's true caption over a corrupted one.

    ``n_per_kind`` fresh ``(scene, true, corrupted)`` probes of each kind
    (:func:`generation.toyworld.negatives.probe`: colour changed, count changed, relation swapped,
    colours swapped between two objects = binding), drawn from ``seed``; a head prefers the truth
    when its score (ITC cosine, ITM log p(match), CAP -NLL) is strictly higher. Returns
    ``{head}_{kind}_prefers_true``, ``{head}_prefers_true`` over all probes, and ``n_eval`` (probes per kind).
    """
    was_training = model.training
    model.eval()
    rng = np.random.default_rng(seed)
    wins: dict[str, list[bool]] = {}
    for kind in kinds:
        probes = [N.probe(kind, rng) for _ in range(n_per_kind)]
        for lo in range(0, n_per_kind, batch):
            chunk = probes[lo: lo + batch]
            img = torch.from_numpy(to_tensor_range(np.stack([render(s) for s, _, _ in chunk]))).to(model.vision_proj.weight.device)
            emb = model.image_embeds(img)
            scores = []
            for texts in ([t.text() for _, t, _ in chunk], [f.text() for _, _, f in chunk]):
                text = model.encode_text(texts)
                scores.append({"itc": model.itc(image_embeds=emb, text=text), "itm": model.itm(image_embeds=emb, text=text),
                               "cap": -model.cap(image_embeds=emb, text=text)})
            for head in ("itc", "itm", "cap"):
                wins.setdefault(f"{head}_{kind}", []).extend((scores[0][head] > scores[1][head]).cpu().tolist())
    model.train(was_training)
    out = {f"{k}_prefers_true": float(np.mean(v)) for k, v in sorted(wins.items())}
    for head in ("itc", "itm", "cap"):
        out[f"{head}_prefers_true"] = float(np.mean([w for k in kinds for w in wins[f"{head}_{k}"]]))
    out["n_eval"] = n_per_kind
    return out


def tie_encoder_decoder(model) -> int:
    """Share every parameter of the text decoder's BERT with the text encoder except self-attention.

    BLIP's pretraining does this (``tie_encoder_decoder_weights(text_encoder, text_decoder.bert,
    '', '/attention')``): the two keep their own causal / bidirectional self-attention and share
    embeddings, cross-attention and feed-forward layers, so what captioning learns about where
    things are (next-token prediction reads relations long before a matching head does) is in the
    layers ITM uses too. The checkpoint keeps both copies of each key, as BLIP's does, so loading
    is unchanged. Returns the number of parameter tensors tied.
    """
    tied = 0

    def tie(enc, dec):
        nonlocal tied
        for name, child in dec.named_children():
            if name != "attention":  # the self-attention stays each model's own
                tie(getattr(enc, name), child)
        for name, _ in list(dec.named_parameters(recurse=False)):
            setattr(dec, name, getattr(enc, name))
            tied += 1

    tie(model.text_encoder, model.text_decoder.bert)
    return tied


def lr_factor(step: int, decay_from: int, warmup: int = 100) -> float:
    """Warm up linearly, hold, then decay linearly to 0 over ``decay_from // 4`` steps from ``decay_from``.

    The decay point is the only thing the step budget sets, so a run stopped by ``--max-minutes``
    (which starts the decay when 80% of the time is spent) is reproduced by ``--decay-from``.
    """
    if step < warmup:
        return (step + 1) / warmup
    if step < decay_from:
        return 1.0
    return max(0.0, 1.0 - (step - decay_from) / max(1, decay_from // 4))


def _reproducing_command(argv: list[str], decay_from: int) -> str:
    """The invocation without ``--max-minutes``/``--steps``/``--decay-from``, with the decay point it used."""
    kept, skip = [], False
    for w in argv:
        if skip:
            skip = False
            continue
        if w in ("--max-minutes", "--steps", "--decay-from"):
            skip = True
            continue
        if w.startswith(("--max-minutes=", "--steps=", "--decay-from=")):
            continue
        kept.append(w)
    return "python -m generation.toyworld.train_blip " + shlex.join(kept + ["--decay-from", str(decay_from)])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000, help="total steps (the decay starts at 80%% of them)")
    ap.add_argument("--decay-from", type=int, default=None,
                    help="start the learning-rate decay here and stop after decay_from // 4 more steps (overrides --steps)")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="start the decay when 80%% of this wall time is spent (the manifest records the --decay-from that reproduces it)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--n-train", type=int, default=30000)
    ap.add_argument("--n-eval", type=int, default=400, help="held-out probes per kind (colour, count, relation, binding)")
    ap.add_argument("--p-pair-relation", type=float, default=0.5, help="share of training captions that relate two objects")
    ap.add_argument("--pos-init", choices=("random", "sincos"), default="sincos",
                    help="ViT position embedding at init (sincos: patch tokens know their place from step 0)")
    ap.add_argument("--seed", type=int, default=0, help="init, batches, captions, negatives and augmentation")
    ap.add_argument("--data-seed", type=int, default=2, help="training scenes (eval uses data-seed + 1000)")
    ap.add_argument("--hard-per-image", type=int, default=1,
                    help="structural hard negatives per image for ITM, each of another kind (relation, order, binding, count, colour)")
    ap.add_argument("--blip", action="append", default=[], metavar="FIELD=INT",
                    help="change a field of the toy BLIP config, e.g. --blip text_layers=4 (repeatable)")
    ap.add_argument("--eval-every", type=int, default=0, help="print held-out relation/binding preferences every N steps (0: never)")
    ap.add_argument("--relation-warmup", type=int, default=0,
                    help="first N steps: two-object scenes, relation captions, relation/order negatives only (a curriculum)")
    ap.add_argument("--tie-encoder-decoder", action="store_true",
                    help="share the text encoder's and decoder's layers except self-attention (BLIP's pretraining)")
    ap.add_argument("--device", default="cpu", help="cpu (the shipped runs) or cuda (exploration; other float rounding)")
    ap.add_argument("--threads", type=int, default=1, help="1 is fastest on a busy machine (no thread barriers)")
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--out", default=str(store.WEIGHTS_DIR))
    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv)
    overrides = {}
    for item in args.blip:
        field_, _, value = item.partition("=")
        if field_ not in {f.name for f in dataclasses.fields(BlipConfig)} or not value.lstrip("-").isdigit():
            ap.error(f"--blip {item!r}: give FIELD=INT with FIELD a BlipConfig field (e.g. text_layers=4)")
        overrides[field_] = int(value)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    data_rng = np.random.default_rng(args.data_seed)
    scenes = [sample_scene(data_rng) for _ in range(args.n_train)]
    X = torch.from_numpy(to_tensor_range(np.stack([render(s) for s in scenes])))
    # scenes of exactly two objects of different kinds in a clear relation: the curriculum's first phase
    related = torch.tensor([i for i, sc in enumerate(scenes)
                            if len(sc.objects) == 2 and N.related_pair(*sc.objects) is not None], dtype=torch.long)
    model = build_toy_blip(seed=args.seed, pos_init=args.pos_init, **overrides).to(args.device).train()
    if args.tie_encoder_decoder:
        tie_encoder_decoder(model)
    g = torch.Generator().manual_seed(args.seed)
    cap_rng = np.random.default_rng(args.seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    decay_from = args.decay_from if args.decay_from is not None else round(0.8 * args.steps)
    timed = args.decay_from is None and args.max_minutes is not None
    print(f"data ready in {time.time() - t0:.0f}s", flush=True)
    step, running = 0, {}
    while step < decay_from + decay_from // 4:
        if timed and step < decay_from and time.time() - t0 >= 0.8 * 60 * args.max_minutes:
            decay_from, timed = max(step, 1), False
            print(f"step {step}: 80% of {args.max_minutes} min spent, decaying over {decay_from // 4} steps", flush=True)
        for group in opt.param_groups:
            group["lr"] = args.lr * lr_factor(step, decay_from)
        if step < args.relation_warmup:
            idx = related[torch.randint(len(related), (args.batch_size,), generator=g)]
            claims = [N.relation_claim(scenes[i], cap_rng) for i in idx.tolist()]
            kinds = ("relation", "order")
        else:
            idx = torch.randint(len(X), (args.batch_size,), generator=g)
            claims = [N.training_claim(scenes[i], cap_rng, p_pair_relation=args.p_pair_relation) for i in idx.tolist()]
            kinds = N.KINDS
        texts = [C.misspell(c.text(), cap_rng) if cap_rng.random() < 0.05 else c.text() for c in claims]
        hard = [(j, bad.text()) for j, (c, i) in enumerate(zip(claims, idx.tolist()))
                for bad in N.hard_negatives(c, scenes[i], cap_rng, args.hard_per_image, kinds)]
        losses = blip_losses(model, augment(X[idx], g).to(args.device), texts, g, hard)
        loss = losses["itc"] + losses["itm"] + losses["cap"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        for k, v in losses.items():
            running[k] = 0.98 * running.get(k, v.item()) + 0.02 * v.item()
        if step % args.log_every == 0:
            print(f"step {step} {time.time() - t0:.0f}s " + " ".join(f"{k}={v:.3f}" for k, v in running.items()), flush=True)
        if args.eval_every and step % args.eval_every == 0:
            live = preferences(model, 200, args.data_seed + 2000, kinds=("relation", "binding"))
            print(f"eval {step} " + " ".join(f"{k.replace('_prefers_true', '')}={v:.2f}" for k, v in live.items()
                                           if k.count("_") == 3), flush=True)
    train_seconds = time.time() - t0
    metrics = preferences(model, args.n_eval, args.data_seed + 1000)
    info = {
        "command": _reproducing_command(argv, decay_from),
        "invocation": "python -m generation.toyworld.train_blip " + shlex.join(argv),
        "seed": args.seed, "data_seed": args.data_seed, "steps": step, "decay_from": decay_from,
        "batch_size": args.batch_size, "n_train": args.n_train, "p_pair_relation": args.p_pair_relation,
        "pos_init": args.pos_init, "hard_per_image": args.hard_per_image, "device": args.device,
        "tie_encoder_decoder": args.tie_encoder_decoder, "relation_warmup": args.relation_warmup,
        "config": dataclasses.asdict(model.config), "vocab": toy_vocab(),
        "params": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(train_seconds, 1), "metrics": metrics,
    }
    path = store.save_weights("blip", {k: v.cpu() for k, v in model.state_dict().items()}, info, Path(args.out))
    print(f"wrote {path}: {metrics}", flush=True)
    return info


if __name__ == "__main__":
    main()
