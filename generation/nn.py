"""Small building blocks shared by the UNet (guided-diffusion's ``nn.py``, trimmed)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in fp32 and cast back: bf16/fp16 statistics over 64k pixels drift."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float()).type(x.dtype)


def normalization(channels: int) -> GroupNorm32:
    """guided-diffusion's norm layer: 32 groups, eps 1e-5."""
    return GroupNorm32(32, channels)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero a module's parameters at init (residual branches start as identity)."""
    with torch.no_grad():
        for p in module.parameters():
            if not p.is_meta:
                p.zero_()
    return module


def conv_nd(dims: int, *args, **kwargs) -> nn.Module:
    """``nn.Conv{1,2,3}d`` by dimension; attention uses 1-D convs (their weights are ``(out, in, 1)``)."""
    return {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims](*args, **kwargs)


def avg_pool_nd(dims: int, *args, **kwargs) -> nn.Module:
    return {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}[dims](*args, **kwargs)


def timestep_embedding(timesteps: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding ``(N, dim)`` of ``(N,)`` timesteps, **cos first** as in guided-diffusion.

    ``freqs_i = exp(-ln(max_period) * i / half)``; output ``[cos(t * freqs), sin(t * freqs)]``.
    Timesteps are the original 0..999 values, also when sampling with respacing.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    )
    args = timesteps[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb
