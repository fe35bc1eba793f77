"""Small shared helpers: JSON cleaning with consistent rounding, canonical cluster codes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SIGNIFICANT_DIGITS = 6


def round_sig(x: float) -> float | None:
    """Round to ``SIGNIFICANT_DIGITS`` so that a summary is the same on every platform."""
    if x is None:
        return None
    x = float(x)
    if not math.isfinite(x):
        return None
    return float(f"{x:.{SIGNIFICANT_DIGITS}g}")


def clean(obj: Any) -> Any:
    """Make ``obj`` JSON-ready: numpy scalars to Python, floats rounded, NaN/inf to None."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return round_sig(obj)
    if isinstance(obj, np.ndarray):
        return clean(obj.tolist())
    return obj


def compact(codes: np.ndarray, levels: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """Renumber codes 0..C-1 in the sorted order of their labels (row order does not matter)."""
    used = np.unique(codes)
    labels = [levels[c] for c in used]
    order = sorted(range(len(used)), key=labels.__getitem__)
    rank = np.empty(len(used), dtype=np.int64)
    rank[order] = np.arange(len(used))
    lut = np.full(len(levels) + 1, -1, dtype=np.int64)
    lut[used] = rank
    return lut[codes], [labels[i] for i in order]
