"""guided-diffusion's UNet (openai/guided-diffusion ``unet.py`` at 22e0df8), reimplemented in plain PyTorch.

Attribute names are guided-diffusion's, so its checkpoints load strictly: ``time_embed``,
``input_blocks.N.M``, ``middle_block``, ``output_blocks.N.M``, ``out``; ResBlocks
``in_layers.{0,2}``, ``emb_layers.1``, ``out_layers.{0,3}``, ``skip_connection``; attention
``norm``, ``qkv`` (Conv1d), ``proj_out`` (Conv1d). See ``reference/GENERATION.md`` §2.

Differences from the original, none of which changes a key or a number:

- no custom gradient checkpoint in ``AttentionBlock`` (the original's breaks backward when the
  weights are frozen, which is exactly guidance's situation);
- no fp16 conversion; use ``torch.autocast(bfloat16)`` (GroupNorm and softmax stay fp32).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generation.checkpoints import load_strict, read_state_dict
from generation.nn import avg_pool_nd, conv_nd, normalization, timestep_embedding, zero_module

# Diffusion flags of guided-diffusion's script_util; accepted (READMEs list them together with
# the model flags) but they configure the sampler, not the network.
DIFFUSION_FLAGS = frozenset({
    "diffusion_steps", "noise_schedule", "timestep_respacing", "use_kl", "predict_xstart",
    "rescale_timesteps", "rescale_learned_sigmas", "sigma_small",
})

# channel_mult="" resolves by image size, as in script_util.create_model.
_DEFAULT_CHANNEL_MULT = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
}


@dataclass(frozen=True)
class UNetConfig:
    """guided-diffusion's model flags, same names and defaults as ``model_and_diffusion_defaults()``.

    ``channel_mult`` and ``attention_resolutions`` accept guided-diffusion's comma strings
    (``"32,16,8"``) or tuples. ``use_fp16`` and ``use_checkpoint`` are accepted and ignored
    (see the module docstring).
    """

    image_size: int = 64
    num_channels: int = 128
    num_res_blocks: int = 2
    channel_mult: Any = ""
    learn_sigma: bool = False
    class_cond: bool = False
    num_classes: int = 1000
    use_checkpoint: bool = False
    attention_resolutions: Any = "16,8"
    num_heads: int = 4
    num_head_channels: int = -1
    num_heads_upsample: int = -1
    use_scale_shift_norm: bool = True
    dropout: float = 0.0
    resblock_updown: bool = False
    use_fp16: bool = False
    use_new_attention_order: bool = False
    in_channels: int = 3

    @classmethod
    def from_flags(cls, **flags) -> "UNetConfig":
        """Build from guided-diffusion flags; diffusion flags are ignored, unknown ones refused."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(flags) - known - DIFFUSION_FLAGS)
        if unknown:
            raise TypeError(
                f"unknown UNet flag(s): {', '.join(unknown)}. Valid guided-diffusion model flags: "
                f"{', '.join(sorted(known))}"
            )
        return cls(**{k: v for k, v in flags.items() if k in known})

    def __post_init__(self):
        problems = []
        mult = self.resolved_channel_mult() if self.channel_mult not in ("", None, ()) else None
        if mult is None and self.image_size not in _DEFAULT_CHANNEL_MULT:
            problems.append(
                f"channel_mult='' has no default for image_size={self.image_size}; pass channel_mult "
                f"(e.g. '1,2') or use image_size in {sorted(_DEFAULT_CHANNEL_MULT)}"
            )
        if self.num_head_channels == -1 and self.num_heads < 1:
            problems.append("set num_heads >= 1 or num_head_channels > 0")
        if self.num_channels % 32:
            problems.append(f"num_channels={self.num_channels} must be a multiple of 32 (GroupNorm has 32 groups)")
        if problems:
            raise ValueError("invalid UNet flags: " + "; ".join(problems))

    def resolved_channel_mult(self) -> tuple[float, ...]:
        cm = self.channel_mult
        if cm in ("", None, ()):
            return _DEFAULT_CHANNEL_MULT[self.image_size]
        if isinstance(cm, str):
            return tuple(float(c) if "." in c else int(c) for c in cm.split(","))
        return tuple(cm)

    def attention_ds(self) -> frozenset[int]:
        """Downsample factors with attention: ``image_size // resolution`` per listed resolution."""
        ar = self.attention_resolutions
        res = [int(r) for r in ar.split(",") if r.strip()] if isinstance(ar, str) else [int(r) for r in ar]
        return frozenset(self.image_size // r for r in res)

    @property
    def out_channels(self) -> int:
        return 2 * self.in_channels if self.learn_sigma else self.in_channels


# Flags of the public 256x256_diffusion_uncond.pt (guided-diffusion README).
UNCOND_256_FLAGS: dict[str, Any] = dict(
    attention_resolutions="32,16,8", class_cond=False, diffusion_steps=1000, image_size=256,
    learn_sigma=True, noise_schedule="linear", num_channels=256, num_head_channels=64,
    num_res_blocks=2, resblock_updown=True, use_fp16=True, use_scale_shift_norm=True,
)

# Same structure in miniature (up/down ResBlocks, scale-shift, legacy attention) for CPU tests.
TINY_FLAGS: dict[str, Any] = dict(
    image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,2", attention_resolutions="8",
    num_head_channels=16, learn_sigma=True, resblock_updown=True, use_scale_shift_norm=True,
)


class TimestepBlock(nn.Module):
    """A module whose forward takes the timestep embedding as a second argument."""


class TimestepEmbedSequential(nn.Sequential, TimestepBlock):
    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x


class Upsample(nn.Module):
    """Nearest x2, then an optional 3x3 conv (key ``conv``)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        self.use_conv = use_conv
        if use_conv:
            self.conv = conv_nd(2, channels, out_channels or channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """Strided 3x3 conv (key ``op``) or, without conv, 2x2 average pooling."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        self.op = (
            conv_nd(2, channels, out_channels or channels, 3, stride=2, padding=1)
            if use_conv else avg_pool_nd(2, kernel_size=2, stride=2)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class ResBlock(TimestepBlock):
    """Residual block conditioned on the timestep embedding; optionally resamples (``up``/``down``).

    With ``use_scale_shift_norm`` the embedding gives ``(scale, shift)`` in that order and
    ``h = norm(h) * (1 + scale) + shift``; otherwise it is added before ``out_layers``.
    """

    def __init__(
        self, channels: int, emb_channels: int, dropout: float, out_channels: int | None = None,
        use_scale_shift_norm: bool = False, up: bool = False, down: bool = False,
    ):
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(normalization(channels), nn.SiLU(), conv_nd(2, channels, out_channels, 3, padding=1))
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        self.out_layers = nn.Sequential(
            normalization(out_channels), nn.SiLU(), nn.Dropout(p=dropout),
            zero_module(conv_nd(2, out_channels, out_channels, 3, padding=1)),
        )
        self.skip_connection = nn.Identity() if out_channels == channels else conv_nd(2, channels, out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        if self.updown:
            # Norm and SiLU before resampling, the conv after: guided-diffusion's order.
            h = self.in_layers[:-1](x)
            h, x = self.h_upd(h), self.x_upd(x)
            h = self.in_layers[-1](h)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)[..., None, None]
        if self.use_scale_shift_norm:
            scale, shift = torch.chunk(emb_out, 2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


def qkv_attention_legacy(qkv: Tensor, n_heads: int) -> Tensor:
    """Attention over a ``(B, 3*H*c, T)`` tensor laid out per head as ``[q_h | k_h | v_h]``.

    The layout of guided-diffusion's ``QKVAttentionLegacy``: reshape to heads first, then split.
    Returns ``(B, H*c, T)``.
    """
    bs, width, length = qkv.shape
    ch = width // (3 * n_heads)
    q, k, v = qkv.reshape(bs * n_heads, ch * 3, length).split(ch, dim=1)
    return _attend(q, k, v, ch).reshape(bs, -1, length)


def qkv_attention_new_order(qkv: Tensor, n_heads: int) -> Tensor:
    """``QKVAttention`` (``use_new_attention_order``): split q, k, v first, then heads."""
    bs, width, length = qkv.shape
    ch = width // (3 * n_heads)
    q, k, v = (t.reshape(bs * n_heads, ch, length) for t in qkv.chunk(3, dim=1))
    return _attend(q, k, v, ch).reshape(bs, -1, length)


def _attend(q: Tensor, k: Tensor, v: Tensor, ch: int) -> Tensor:
    # c^(-1/4) on both q and k (not 1/sqrt(c) on one) keeps fp16 products in range, as upstream.
    scale = 1 / math.sqrt(math.sqrt(ch))
    weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)
    weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
    return torch.einsum("bts,bcs->bct", weight, v)


class AttentionBlock(nn.Module):
    """Self-attention over all positions; ``qkv``/``proj_out`` are Conv1d(k=1) as in the checkpoint."""

    def __init__(self, channels: int, num_heads: int = 1, num_head_channels: int = -1, use_new_attention_order: bool = False):
        super().__init__()
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            if channels % num_head_channels:
                raise ValueError(f"channels {channels} not divisible by num_head_channels {num_head_channels}")
            self.num_heads = channels // num_head_channels
        self.norm = normalization(channels)
        self.qkv = conv_nd(1, channels, channels * 3, 1)
        self.attention = qkv_attention_new_order if use_new_attention_order else qkv_attention_legacy
        self.proj_out = zero_module(conv_nd(1, channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        h = self.attention(self.qkv(self.norm(x)), self.num_heads)
        return (x + self.proj_out(h)).reshape(b, c, *spatial)


class UNetModel(nn.Module):
    """guided-diffusion's ``UNetModel`` for 2-D images.

    ``model(x, t)``: ``x`` ``(B, C, H, W)``, ``t`` ``(B,)`` original timesteps (0..999);
    returns ``(B, 2C, H, W)`` with ``learn_sigma`` (ε̂ then the variance interpolation ``v``),
    else ``(B, C, H, W)``. Class-conditional models also take ``y`` ``(B,)`` labels.
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = c = config
        mc = c.num_channels
        mult = c.resolved_channel_mult()
        attn_ds = c.attention_ds()
        heads_up = c.num_heads if c.num_heads_upsample == -1 else c.num_heads_upsample
        emb_dim = mc * 4

        def attention(ch: int, heads: int) -> AttentionBlock:
            return AttentionBlock(ch, heads, c.num_head_channels, c.use_new_attention_order)

        def res(ch: int, out: int, **kw) -> ResBlock:
            return ResBlock(ch, emb_dim, c.dropout, out, use_scale_shift_norm=c.use_scale_shift_norm, **kw)

        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if c.class_cond:
            self.label_emb = nn.Embedding(c.num_classes, emb_dim)

        ch = input_ch = int(mult[0] * mc)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(conv_nd(2, c.in_channels, ch, 3, padding=1))])
        skip_chans, ds = [ch], 1
        for level, m in enumerate(mult):
            for _ in range(c.num_res_blocks):
                layers: list[nn.Module] = [res(ch, int(m * mc))]
                ch = int(m * mc)
                if ds in attn_ds:
                    layers.append(attention(ch, c.num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_chans.append(ch)
            if level != len(mult) - 1:
                down = res(ch, ch, down=True) if c.resblock_updown else Downsample(ch, True, ch)
                self.input_blocks.append(TimestepEmbedSequential(down))
                skip_chans.append(ch)
                ds *= 2

        self.middle_block = TimestepEmbedSequential(res(ch, ch), attention(ch, c.num_heads), res(ch, ch))

        self.output_blocks = nn.ModuleList()
        for level, m in list(enumerate(mult))[::-1]:
            for i in range(c.num_res_blocks + 1):
                layers = [res(ch + skip_chans.pop(), int(mc * m))]
                ch = int(mc * m)
                if ds in attn_ds:
                    layers.append(attention(ch, heads_up))
                if level and i == c.num_res_blocks:
                    layers.append(res(ch, ch, up=True) if c.resblock_updown else Upsample(ch, True, ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(
            normalization(ch), nn.SiLU(), zero_module(conv_nd(2, input_ch, c.out_channels, 3, padding=1))
        )

    def forward(self, x: Tensor, timesteps: Tensor, y: Tensor | None = None) -> Tensor:
        if (y is not None) != self.config.class_cond:
            raise ValueError("pass class labels y exactly when the model is class-conditional (class_cond=True)")
        emb = self.time_embed(timestep_embedding(timesteps, self.config.num_channels))
        if y is not None:
            emb = emb + self.label_emb(y)
        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h.type(x.dtype))


def build_unet(config: UNetConfig | None = None, *, device: str | torch.device | None = None, **flags) -> UNetModel:
    """A randomly initialised UNet (zero-initialised output convs, as upstream)."""
    config = config or UNetConfig.from_flags(**flags)
    with torch.device(device or "cpu"):
        return UNetModel(config)


def tiny_unet(*, seed: int = 0, **overrides) -> UNetModel:
    """A random tiny UNet of :data:`TINY_FLAGS`, deterministic from ``seed``, frozen, eval mode.

    The zero-initialised convs get small random weights too: with upstream's init the network
    would output exactly zero and sampling/guidance tests would test nothing.
    """
    config = UNetConfig.from_flags(**{**TINY_FLAGS, **overrides})
    gen = torch.Generator().manual_seed(seed)
    model = UNetModel(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim > 1:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
    return model.eval().requires_grad_(False)


def load_unet(path_or_state_dict: str | os.PathLike | Mapping[str, Tensor], **flags) -> UNetModel:
    """Load a guided-diffusion checkpoint strictly (eval mode, frozen weights).

    Parameters
    ----------
    path_or_state_dict:
        A ``.pt`` file holding a flat state dict (e.g. ``256x256_diffusion_uncond.pt``), or the
        state dict itself. Loading never downloads.
    flags:
        guided-diffusion flags from the checkpoint's README (``image_size``, ``num_channels``,
        ``attention_resolutions``, ...). Without any flag, those of ``256x256_diffusion_uncond.pt``.

    Raises
    ------
    CheckpointError: missing/corrupt file, or keys/shapes that do not match the flags (the
        message names the first missing and unexpected keys).
    TypeError: an unknown flag.
    """
    config = UNetConfig.from_flags(**(flags or UNCOND_256_FLAGS))
    if isinstance(path_or_state_dict, Mapping):
        sd, what = dict(path_or_state_dict), "UNet state dict"
    else:
        sd = read_state_dict(path_or_state_dict)
        what = f"UNet checkpoint {os.fspath(path_or_state_dict)}"
    # Built on meta and filled by assignment: no random init of 550M parameters and no second copy.
    with torch.device("meta"):
        model = UNetModel(config)
    load_strict(model, {k: v.to("meta") for k, v in sd.items()}, what=what)
    model.load_state_dict(sd, strict=True, assign=True)
    dtypes = {v.dtype for v in sd.values()}
    if dtypes != {torch.float32}:
        # fp16 copies of the checkpoint exist; compute in fp32 and let autocast pick bf16.
        model = model.float()
    return model.eval().requires_grad_(False)
