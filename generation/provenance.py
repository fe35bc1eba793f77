"""What an image records about how it was made: code version, library versions, device."""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path

import torch

_REPO = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``git describe``-like revision of this checkout (``<sha>[-dirty]``), or ``"unknown"`` outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=_REPO, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "generation"],
            cwd=_REPO, capture_output=True, text=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def device_description(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"{device.type}:{platform.processor() or platform.machine()}"


def environment(device: torch.device | str) -> dict[str, str]:
    return {
        "code_version": code_version(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": device_description(device),
    }
