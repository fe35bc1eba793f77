"""BLIP as a differentiable scorer: one ViT shared by the ITC, ITM and CAP heads.

Loads the original Salesforce BLIP *pretrain* checkpoints (``model_base.pth``,
``model_base_capfilt_large.pth``), the only ones holding all three heads on one vision tower
(see ``reference/GENERATION.md`` §6). Module and attribute names follow BLIP's ``blip_pretrain.py``,
``vit.py`` and ``med.py`` so the checkpoint keys load strictly:

- ``visual_encoder``: timm's ``VisionTransformer`` (ViT-B/16); its keys equal BLIP's ``vit.py``.
- ``text_encoder``: MED, i.e. BERT with a cross-attention block in every layer, no pooler.
  BLIP's ``med.py`` does not import with transformers 5, so it is reimplemented here.
- ``text_decoder``: the same BERT run causally, plus the LM head ``cls.predictions``.
- ``vision_proj``, ``text_proj``, ``itm_head``, ``temp``.

All scores are per sample (no batch reductions) so that summing them over a batch gives every
image its own guidance gradient. Dropout is left out: the module only scores.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from functools import partial
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generation.checkpoints import CheckpointError, load_strict, read_state_dict
from generation.tokenization import BlipTokenizer, pre_caption

# CLIP statistics: BLIP's eval transform (and HF's BlipImageProcessor) normalise with these.
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)

# Training-only tensors of BLIP_Pretrain: momentum encoders and the contrastive queues.
_MOMENTUM_PREFIXES = ("visual_encoder_m.", "text_encoder_m.", "vision_proj_m.", "text_proj_m.")
_QUEUE_KEYS = ("image_queue", "text_queue", "queue_ptr")


@dataclass(frozen=True)
class BlipConfig:
    """Sizes and scoring options of :class:`BlipScorer`. ``base()`` is BLIP ViT-B/16 + BERT-base."""

    image_size: int = 384
    patch_size: int = 16
    vision_width: int = 768
    vision_depth: int = 12
    vision_heads: int = 12
    vision_mlp_ratio: float = 4.0
    vision_layer_norm_eps: float = 1e-6
    vocab_size: int = 30524
    text_width: int = 768
    text_layers: int = 12
    text_heads: int = 12
    text_intermediate: int = 3072
    max_position_embeddings: int = 512
    text_layer_norm_eps: float = 1e-12
    embed_dim: int = 256
    # ITC/ITM texts: BLIP retrieval pads/truncates to 35 tokens; captions to 40 (BLIP_Decoder).
    text_max_length: int = 35
    cap_max_length: int = 40
    # "[ENC]" is what BLIP's ITM head was trained with; "[CLS]" reproduces BLIP's demo class and HF.
    itm_first_token: str = "[ENC]"
    # BLIP_Decoder's prompt, masked out of the loss; "" gives the pretraining LM objective.
    cap_prompt: str = "a picture of "
    # Activation checkpointing of attn/mlp in the last `vit_ckpt_layer` ViT blocks (None: all).
    # "fairscale" is BLIP's checkpoint_wrapper (reentrant: works with .backward() only, it raises
    # under torch.autograd.grad); "torch" is torch.utils.checkpoint non-reentrant, fine with both.
    vit_grad_checkpointing: bool = False
    vit_checkpoint_impl: str = "fairscale"
    vit_ckpt_layer: int | None = None

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size={self.image_size} is not divisible by patch_size={self.patch_size}; "
                f"use a multiple of {self.patch_size} (BLIP uses 384, or 224 for the pretrain ViT)"
            )
        if self.vit_checkpoint_impl not in ("fairscale", "torch"):
            raise ValueError(f"vit_checkpoint_impl must be 'fairscale' or 'torch', not {self.vit_checkpoint_impl!r}")
        if self.itm_first_token not in ("[ENC]", "[CLS]"):
            raise ValueError(f"itm_first_token must be '[ENC]' or '[CLS]', not {self.itm_first_token!r}")
        for name, width, heads in (
            ("vision", self.vision_width, self.vision_heads),
            ("text", self.text_width, self.text_heads),
        ):
            if width % heads:
                raise ValueError(f"{name} width {width} is not divisible by its {heads} heads")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @classmethod
    def base(cls, **overrides) -> "BlipConfig":
        """BLIP base: ViT-B/16 and BERT-base MED (``configs/med_config.json``)."""
        return cls(**overrides)

    @classmethod
    def large(cls, **overrides) -> "BlipConfig":
        """BLIP large: ViT-L/16 (the text side stays BERT-base, cross-attending 1024-wide tokens)."""
        return cls(**{"vision_width": 1024, "vision_depth": 24, "vision_heads": 16, **overrides})

    @classmethod
    def tiny(cls, **overrides) -> "BlipConfig":
        """About 0.1M parameters, same structure: fast CPU tests (vocab_size comes from the tokenizer)."""
        fields = dict(
            image_size=32, patch_size=8, vision_width=32, vision_depth=2, vision_heads=2,
            vocab_size=0, text_width=32, text_layers=2, text_heads=2, text_intermediate=64,
            max_position_embeddings=64, embed_dim=16,
        )
        fields.update(overrides)
        return cls(**fields)


# ----------------------------------------------------------------------------------------------
# Vision tower


def build_vit(config: BlipConfig) -> nn.Module:
    """BLIP's ViT as a timm ``VisionTransformer`` (same 150 key names as ``models/vit.py``)."""
    from timm.models.vision_transformer import VisionTransformer

    vit = VisionTransformer(
        img_size=config.image_size,
        patch_size=config.patch_size,
        embed_dim=config.vision_width,
        depth=config.vision_depth,
        num_heads=config.vision_heads,
        mlp_ratio=config.vision_mlp_ratio,
        qkv_bias=True,
        num_classes=0,
        norm_layer=partial(nn.LayerNorm, eps=config.vision_layer_norm_eps),
        act_layer=nn.GELU,
    )
    if config.vit_grad_checkpointing:
        # Both wrappers patch forward in place and return the same module, so the keys are
        # unchanged, and both do nothing when grad is disabled. Placement rule of BLIP's vit.py.
        if config.vit_checkpoint_impl == "fairscale":
            from fairscale.nn.checkpoint.checkpoint_activations import checkpoint_wrapper
        else:
            checkpoint_wrapper = _torch_checkpoint_wrapper
        n = config.vision_depth if config.vit_ckpt_layer is None else config.vit_ckpt_layer
        for i, block in enumerate(vit.blocks):
            if i >= config.vision_depth - n:
                block.attn = checkpoint_wrapper(block.attn)
                block.mlp = checkpoint_wrapper(block.mlp)
    return vit


def _torch_checkpoint_wrapper(module: nn.Module) -> nn.Module:
    """fairscale-style in-place wrapper over non-reentrant ``torch.utils.checkpoint``."""
    from torch.utils.checkpoint import checkpoint

    forward = module.forward

    def checkpointed(*args, **kwargs):
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    module.forward = checkpointed
    return module


def interpolate_pos_embed(pos_embed: Tensor, num_patches: int, num_extra_tokens: int = 1) -> Tensor:
    """Resize a ViT position embedding to another square patch grid, as BLIP's loader does.

    Bicubic on the patch grid (``align_corners=False``), the class token kept as is.

    Parameters
    ----------
    pos_embed: ``(1, extra + g*g, D)``, e.g. ``(1, 197, 768)`` for the 224-px pretrain ViT.
    num_patches: target ``G*G``, e.g. 576 for 384 px.

    Returns ``(1, extra + G*G, D)``; the input itself when the grid already fits.
    """
    n_old = pos_embed.shape[-2] - num_extra_tokens
    old, new = math.isqrt(n_old), math.isqrt(num_patches)
    if old * old != n_old or new * new != num_patches:
        raise CheckpointError(
            f"pos_embed with {pos_embed.shape[-2]} tokens is not a square patch grid plus "
            f"{num_extra_tokens} class token; is this a BLIP ViT checkpoint?"
        )
    if old == new:
        return pos_embed
    dim = pos_embed.shape[-1]
    extra, grid = pos_embed[:, :num_extra_tokens], pos_embed[:, num_extra_tokens:]
    grid = grid.reshape(-1, old, old, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=(new, new), mode="bicubic", align_corners=False).to(pos_embed.dtype)
    grid = grid.permute(0, 2, 3, 1).flatten(1, 2)
    return torch.cat((extra, grid), dim=1)


# ----------------------------------------------------------------------------------------------
# MED: BERT with cross-attention (BLIP models/med.py), key names kept


class BertEmbeddings(nn.Module):
    def __init__(self, c: BlipConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.text_width)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.text_width)
        self.LayerNorm = nn.LayerNorm(c.text_width, eps=c.text_layer_norm_eps)
        # Persistent because the BLIP checkpoints store it; a strict load then needs no key drop.
        self.register_buffer("position_ids", torch.arange(c.max_position_embeddings).unsqueeze(0))

    def forward(self, input_ids: Tensor) -> Tensor:
        length = input_ids.shape[1]
        if length > self.position_ids.shape[1]:
            raise ValueError(f"text of {length} tokens exceeds {self.position_ids.shape[1]} positions")
        h = self.word_embeddings(input_ids) + self.position_embeddings(self.position_ids[:, :length])
        return self.LayerNorm(h)


class BertSelfAttention(nn.Module):
    def __init__(self, c: BlipConfig, kv_width: int):
        super().__init__()
        self.num_heads = c.text_heads
        self.query = nn.Linear(c.text_width, c.text_width)
        # Cross-attention keys/values read the ViT tokens (encoder_width = vision width).
        self.key = nn.Linear(kv_width, c.text_width)
        self.value = nn.Linear(kv_width, c.text_width)

    def _heads(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, -1).transpose(1, 2)

    def forward(self, h: Tensor, mask: Tensor | None, context: Tensor | None = None) -> Tensor:
        kv = h if context is None else context
        q, k, v = self._heads(self.query(h)), self._heads(self.key(kv)), self._heads(self.value(kv))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return out.transpose(1, 2).flatten(2)


class BertSelfOutput(nn.Module):
    def __init__(self, c: BlipConfig, in_width: int):
        super().__init__()
        self.dense = nn.Linear(in_width, c.text_width)
        self.LayerNorm = nn.LayerNorm(c.text_width, eps=c.text_layer_norm_eps)

    def forward(self, h: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dense(h) + residual)


class BertAttention(nn.Module):
    def __init__(self, c: BlipConfig, kv_width: int):
        super().__init__()
        self.self = BertSelfAttention(c, kv_width)
        self.output = BertSelfOutput(c, c.text_width)

    def forward(self, h: Tensor, mask: Tensor | None, context: Tensor | None = None) -> Tensor:
        return self.output(self.self(h, mask, context), h)


class BertIntermediate(nn.Module):
    def __init__(self, c: BlipConfig):
        super().__init__()
        self.dense = nn.Linear(c.text_width, c.text_intermediate)

    def forward(self, h: Tensor) -> Tensor:
        return F.gelu(self.dense(h))


class BertLayer(nn.Module):
    def __init__(self, c: BlipConfig):
        super().__init__()
        self.attention = BertAttention(c, c.text_width)
        self.crossattention = BertAttention(c, c.vision_width)
        self.intermediate = BertIntermediate(c)
        self.output = BertSelfOutput(c, c.text_intermediate)

    def forward(self, h: Tensor, mask: Tensor, image_embeds: Tensor | None) -> Tensor:
        h = self.attention(h, mask)
        if image_embeds is not None:
            # The image tokens are never padded (BLIP passes an all-ones encoder mask): no mask.
            h = self.crossattention(h, None, image_embeds)
        return self.output(self.intermediate(h), h)


class BertEncoder(nn.Module):
    def __init__(self, c: BlipConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(c) for _ in range(c.text_layers))

    def forward(self, h: Tensor, mask: Tensor, image_embeds: Tensor | None) -> Tensor:
        for layer in self.layer:
            h = layer(h, mask, image_embeds)
        return h


class BertModel(nn.Module):
    """MED ``BertModel(add_pooling_layer=False)``.

    ``image_embeds=None`` is MED's ``mode='text'`` (no cross-attention); otherwise multimodal.
    ``causal=True`` is the decoder's left-to-right self-attention.
    """

    def __init__(self, c: BlipConfig):
        super().__init__()
        self.embeddings = BertEmbeddings(c)
        self.encoder = BertEncoder(c)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, image_embeds: Tensor | None = None, *, causal: bool = False
    ) -> Tensor:
        h = self.embeddings(input_ids)
        keep = attention_mask[:, None, None, :].to(h.dtype)
        if causal:
            n = input_ids.shape[1]
            keep = keep * torch.ones(n, n, device=h.device, dtype=h.dtype).tril()
        # BERT's additive -10000: exp(-10000) underflows to 0, so padding never changes a sample's
        # scores, and the mask stays finite under bf16/fp16 autocast.
        mask = (1.0 - keep) * -10000.0
        if image_embeds is not None:
            image_embeds = image_embeds.to(h.dtype)
        return self.encoder(h, mask, image_embeds)


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, c: BlipConfig):
        super().__init__()
        self.dense = nn.Linear(c.text_width, c.text_width)
        self.LayerNorm = nn.LayerNorm(c.text_width, eps=c.text_layer_norm_eps)

    def forward(self, h: Tensor) -> Tensor:
        return self.LayerNorm(F.gelu(self.dense(h)))


class BertLMPredictionHead(nn.Module):
    def __init__(self, c: BlipConfig):
        super().__init__()
        self.transform = BertPredictionHeadTransform(c)
        self.decoder = nn.Linear(c.text_width, c.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(c.vocab_size))
        # As in BERT: one tensor under two names (`bias`, `decoder.bias`), both in the checkpoint.
        self.decoder.bias = self.bias

    def forward(self, h: Tensor) -> Tensor:
        return self.decoder(self.transform(h))


class BertOnlyMLMHead(nn.Module):
    def __init__(self, c: BlipConfig):
        super().__init__()
        self.predictions = BertLMPredictionHead(c)

    def forward(self, h: Tensor) -> Tensor:
        return self.predictions(h)


class BertLMHeadModel(nn.Module):
    """MED ``BertLMHeadModel``: causal ``bert`` with cross-attention, and the vocabulary head."""

    def __init__(self, c: BlipConfig):
        super().__init__()
        self.bert = BertModel(c)
        self.cls = BertOnlyMLMHead(c)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, image_embeds: Tensor) -> Tensor:
        """Vocabulary logits ``(B, L, V)``."""
        return self.cls(self.bert(input_ids, attention_mask, image_embeds, causal=True))


# ----------------------------------------------------------------------------------------------
# Scorer


@dataclass
class TextBatch:
    """Prompts tokenised once for all three heads (shapes ``(N, L)``, N texts)."""

    texts: list[str]
    ids: Tensor  # [CLS] first: the ITC text encoder input
    mask: Tensor
    itm_ids: Tensor  # first token replaced by config.itm_first_token
    cap_ids: Tensor  # prompt + caption, [DEC] first
    cap_mask: Tensor
    cap_labels: Tensor  # cap_ids with prompt and padding set to -100
    itc_feat: Tensor | None = None  # normalised projected text feature, cached when weights are frozen
    itc_feat_owner: int | None = None  # id() of the scorer that computed itc_feat

    def __len__(self) -> int:
        return self.ids.shape[0]

    def to(self, device: torch.device | str) -> "TextBatch":
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return TextBatch(**{k: v.to(device) if isinstance(v, Tensor) else v for k, v in values.items()})


def _expand(t: Tensor, batch: int) -> Tensor:
    """Broadcast a one-text batch over ``batch`` images; otherwise sizes must agree."""
    if t.shape[0] == batch:
        return t
    if t.shape[0] == 1:
        return t.expand(batch, *t.shape[1:])
    raise ValueError(f"{t.shape[0]} texts for {batch} images: pass one text per image, or a single text")


def _at_least_fp32(t: Tensor) -> Tensor:
    """Log-softmax over 30524 classes loses too much in bf16/fp16; float64 stays float64."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


class BlipScorer(nn.Module):
    """BLIP pretrain model reduced to three differentiable per-sample scores.

    Images are ``(B, 3, H, W)`` in ``[-1, 1]`` (the diffusion convention), any size; texts are a
    list of B strings, or of one string broadcast over the batch.

    Parameters
    ----------
    config: sizes and options.
    tokenizer: ``None`` only for building/inspecting weights; scoring needs it.
    """

    def __init__(self, config: BlipConfig, tokenizer: BlipTokenizer | None = None):
        super().__init__()
        if tokenizer is not None and len(tokenizer) != config.vocab_size:
            raise ValueError(
                f"tokenizer has {len(tokenizer)} tokens but the text model has vocab_size={config.vocab_size}; "
                f"BLIP needs bert-base-uncased's 30522-token vocab.txt (+[DEC], [ENC] = 30524)"
            )
        self.config = config
        self.tokenizer = tokenizer
        self.visual_encoder = build_vit(config)
        self.text_encoder = BertModel(config)
        self.text_decoder = BertLMHeadModel(config)
        self.vision_proj = nn.Linear(config.vision_width, config.embed_dim)
        self.text_proj = nn.Linear(config.text_width, config.embed_dim)
        self.itm_head = nn.Linear(config.text_width, 2)
        self.temp = nn.Parameter(torch.tensor(0.07))

    # -- inputs ------------------------------------------------------------------------------

    def preprocess(self, images: Tensor) -> Tensor:
        """``[-1, 1]`` images -> BLIP's normalised input at ``config.image_size`` (differentiable).

        Bicubic with antialias: torch's antialiased kernel is PIL's (a=-0.5, widened when
        shrinking), which is what BLIP's ``transforms.Resize(..., BICUBIC)`` ran on PIL images.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W) in [-1, 1], got shape {tuple(images.shape)}")
        dtype = self.vision_proj.weight.dtype
        x = (images.to(dtype) + 1) / 2
        size = self.config.image_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
        mean = torch.tensor(IMAGE_MEAN, device=x.device, dtype=dtype).view(1, 3, 1, 1)
        std = torch.tensor(IMAGE_STD, device=x.device, dtype=dtype).view(1, 3, 1, 1)
        return (x - mean) / std

    def image_embeds(self, images: Tensor) -> Tensor:
        """ViT tokens ``(B, 1 + P, D)`` after the final norm; differentiable w.r.t. ``images``."""
        return self.visual_encoder.forward_features(self.preprocess(images))

    def encode_text(self, texts: Sequence[str]) -> TextBatch:
        """Tokenise prompts once (BLIP's ``pre_caption`` first) for ITC, ITM and CAP."""
        if self.tokenizer is None:
            raise RuntimeError("this BlipScorer was built without a tokenizer; use load_blip(...) or tiny_blip()")
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        tok, c = self.tokenizer, self.config
        device = self.vision_proj.weight.device
        clean = [pre_caption(t) for t in texts]
        ids, mask = tok(clean, max_length=c.text_max_length)
        itm_ids = ids.clone()
        if c.itm_first_token == "[ENC]":
            itm_ids[:, 0] = tok.enc_token_id
        cap_ids, cap_mask = tok([c.cap_prompt + t for t in clean], max_length=c.cap_max_length)
        cap_ids[:, 0] = tok.bos_token_id
        labels = cap_ids.masked_fill(cap_mask == 0, -100)
        labels[:, : self.prompt_length] = -100
        # Checked here, once per prompt, so that cap() needs no host sync in the sampling loop.
        empty = [t for t, row in zip(texts, labels) if not (row[1:] != -100).any()]
        if empty:
            raise ValueError(
                f"no caption token is left to score after the {self.prompt_length}-token prompt for {empty[:3]}; "
                f"raise cap_max_length (now {c.cap_max_length})"
            )
        return TextBatch(texts, ids, mask, itm_ids, cap_ids, cap_mask, labels).to(device)

    @property
    def prompt_length(self) -> int:
        """Masked caption positions: ``len(tokenize(prompt)) - 1`` (4 for ``"a picture of "``)."""
        if self.tokenizer is None:
            raise RuntimeError("prompt_length needs the tokenizer")
        return len(self.tokenizer.encode(self.config.cap_prompt)) - 1

    def _inputs(self, images, texts, image_embeds, text) -> tuple[Tensor, TextBatch]:
        if (images is None) == (image_embeds is None):
            raise ValueError("pass exactly one of images or image_embeds")
        if (texts is None) == (text is None):
            raise ValueError("pass exactly one of texts or text (a TextBatch from encode_text)")
        if image_embeds is None:
            image_embeds = self.image_embeds(images)
        if text is None:
            text = self.encode_text(texts)
        return image_embeds, text

    # -- scores ------------------------------------------------------------------------------

    def text_features(self, text: TextBatch) -> Tensor:
        """Normalised projected ``[CLS]`` features ``(N, E)`` of the text-only encoder.

        Image-independent, so cached on ``text`` while the text weights are frozen.
        """
        if text.itc_feat is not None and text.itc_feat_owner == id(self):
            return text.itc_feat
        h = self.text_encoder(text.ids, text.mask)
        feat = F.normalize(self.text_proj(h[:, 0]), dim=-1)
        trainable = any(p.requires_grad for m in (self.text_encoder, self.text_proj) for p in m.parameters())
        if not trainable:
            text.itc_feat, text.itc_feat_owner = feat.detach(), id(self)
        return feat

    def itc(self, images=None, texts=None, *, image_embeds=None, text=None) -> Tensor:
        """Cosine similarity ``(B,)`` of projected image and text features (no ``temp``)."""
        image_embeds, text = self._inputs(images, texts, image_embeds, text)
        image_feat = F.normalize(self.vision_proj(image_embeds[:, 0]), dim=-1)
        text_feat = _expand(self.text_features(text), image_feat.shape[0])
        return (image_feat * text_feat).sum(-1)

    def itm(self, images=None, texts=None, *, image_embeds=None, text=None) -> Tensor:
        """``log p(match)`` ``(B,)``: ``log_softmax(itm_head(h[:, 0]))[:, 1]`` of the multimodal encoder."""
        image_embeds, text = self._inputs(images, texts, image_embeds, text)
        b = image_embeds.shape[0]
        h = self.text_encoder(_expand(text.itm_ids, b), _expand(text.mask, b), image_embeds)
        return F.log_softmax(_at_least_fp32(self.itm_head(h[:, 0])), dim=-1)[:, 1]

    def cap(self, images=None, texts=None, *, image_embeds=None, text=None, label_smoothing: float = 0.0) -> Tensor:
        """Decoder negative log-likelihood ``(B,)`` of the caption, mean over its target tokens.

        Targets are the caption tokens after the prompt and the final ``[SEP]``; BLIP trained
        with ``label_smoothing=0.1``, which adds a uniform-distribution term to each token.
        """
        image_embeds, text = self._inputs(images, texts, image_embeds, text)
        b = image_embeds.shape[0]
        labels = _expand(text.cap_labels, b)[:, 1:]
        logits = self.text_decoder(_expand(text.cap_ids, b), _expand(text.cap_mask, b), image_embeds)
        nll = F.cross_entropy(
            _at_least_fp32(logits[:, :-1]).transpose(1, 2), labels, ignore_index=-100,
            reduction="none", label_smoothing=label_smoothing,
        )
        return nll.sum(-1) / (labels != -100).sum(-1)


# ----------------------------------------------------------------------------------------------
# Construction and loading


def tiny_blip(*, seed: int = 0, image_size: int = 32) -> BlipScorer:
    """A random tiny scorer (width 32, 2 layers, 2 heads, patch 8) with a built-in vocabulary.

    Deterministic from ``seed`` without touching the global RNG; eval mode, frozen weights.
    """
    tokenizer = BlipTokenizer.tiny()
    config = BlipConfig.tiny(image_size=image_size, vocab_size=len(tokenizer))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BlipScorer(config, tokenizer)
    return model.eval().requires_grad_(False)


def _infer_preset(state_dict: Mapping[str, Tensor]) -> Callable[..., BlipConfig]:
    """ViT-L checkpoints (``model_large.pth``) are recognised by their 1024-wide class token."""
    cls_token = state_dict.get("visual_encoder.cls_token")
    if cls_token is not None and cls_token.shape[-1] == 1024:
        return BlipConfig.large
    return BlipConfig.base


def prepare_pretrain_state_dict(state_dict: Mapping[str, Tensor], config: BlipConfig) -> dict[str, Tensor]:
    """Drop BLIP_Pretrain's momentum encoders and queues; fit ``pos_embed`` to ``config.image_size``."""
    sd = {
        k: v for k, v in state_dict.items()
        if not k.startswith(_MOMENTUM_PREFIXES) and k not in _QUEUE_KEYS
    }
    if not any(k.startswith("text_decoder.") for k in sd):
        raise CheckpointError(
            "the checkpoint has no text_decoder: it is a retrieval finetune (or not BLIP). The CAP head "
            "needs a BLIP pretrain checkpoint: model_base.pth or model_base_capfilt_large.pth"
        )
    if not any(k.startswith("text_encoder.") for k in sd):
        raise CheckpointError(
            "the checkpoint has no text_encoder: it is a caption finetune (or not BLIP). ITC/ITM need a "
            "BLIP pretrain checkpoint: model_base.pth or model_base_capfilt_large.pth"
        )
    if "visual_encoder.pos_embed" in sd:
        sd["visual_encoder.pos_embed"] = interpolate_pos_embed(sd["visual_encoder.pos_embed"], config.num_patches)
    return sd


def load_blip(
    path_or_state_dict: str | os.PathLike | Mapping[str, Tensor],
    vocab_file: str | os.PathLike,
    image_size: int = 224,  # the pretrain checkpoints' training resolution (pos_embed 1x197x768)
    **cfg_overrides,
) -> BlipScorer:
    """Load a BLIP pretrain checkpoint strictly as a :class:`BlipScorer` (eval mode, frozen weights).

    Parameters
    ----------
    path_or_state_dict:
        ``model_base.pth`` / ``model_base_capfilt_large.pth`` (weights under ``"model"``), or the
        state dict itself. Momentum encoders (``*_m``), ``image_queue``, ``text_queue`` and
        ``queue_ptr`` are dropped; the 224-px ``pos_embed`` (197 tokens) is bicubically resized to
        ``image_size``; every remaining key must match the model, including ``position_ids``.
    vocab_file: bert-base-uncased ``vocab.txt``.
    image_size: working resolution (a multiple of 16).
    cfg_overrides: other :class:`BlipConfig` fields (``itm_first_token``, ``cap_prompt``, ...).

    Raises
    ------
    CheckpointError: unreadable file, wrong checkpoint, or keys/shapes that do not match.
    FileNotFoundError: no vocab file.
    """
    tokenizer = BlipTokenizer.from_vocab_file(vocab_file)
    if isinstance(path_or_state_dict, Mapping):
        state_dict, what = dict(path_or_state_dict), "BLIP state dict"
    else:
        state_dict = read_state_dict(path_or_state_dict, inner_key="model")
        what = f"BLIP checkpoint {os.fspath(path_or_state_dict)}"
    preset = _infer_preset(state_dict)
    config = preset(**{"image_size": image_size, "vocab_size": len(tokenizer), **cfg_overrides})
    sd = prepare_pretrain_state_dict(state_dict, config)
    words = sd.get("text_encoder.embeddings.word_embeddings.weight")
    if words is not None and words.shape[0] != len(tokenizer):
        raise CheckpointError(
            f"{what} has {words.shape[0]} text tokens but the vocab file {os.fspath(vocab_file)} gives "
            f"{len(tokenizer)} (with [DEC], [ENC]); use bert-base-uncased's vocab.txt"
        )
    # Built on the meta device and filled by assignment: no random init of 250M parameters, no
    # second copy in memory, and tensors that the checkpoint ties stay shared.
    with torch.device("meta"):
        model = BlipScorer(config, tokenizer)
    # load_strict reports mismatches; fed meta copies it checks keys and shapes without copying.
    load_strict(model, {k: v.to("meta") for k, v in sd.items()}, what=what)
    model.load_state_dict(sd, strict=True, assign=True)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise CheckpointError(f"{what}: tensors not filled by the checkpoint: {', '.join(left[:5])}")
    return model.eval().requires_grad_(False)
