"""Reading checkpoint files and loading them strictly, with errors that say what to fix."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Mapping

import torch


class CheckpointError(Exception):
    """A checkpoint file is missing, unreadable, or does not match the model."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _trust_pickle() -> bool:
    return os.environ.get("WEIGHTS_TRUST_PICKLE", "").lower() in {"1", "true", "yes"}


def read_state_dict(
    path: str | os.PathLike, *, inner_key: str | None = None, allow_pickle: bool | None = None
) -> dict[str, torch.Tensor]:
    """Load a flat ``name -> tensor`` mapping from a ``.pt``/``.pth`` file on the CPU.

    Files are read with ``weights_only=True``. Some released checkpoints also pickle plain
    Python objects (training config, optimizer state); those load only with ``allow_pickle``
    (default: the ``WEIGHTS_TRUST_PICKLE`` environment variable), which runs the file's pickle
    code, so use it for files from a source you trust.

    :param inner_key: unwrap ``ckpt[inner_key]`` when present (BLIP keeps weights under ``"model"``).
    :raises CheckpointError: the file is missing, truncated/corrupt, or not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint not found: {path}. Put the file there, or run "
            f"`python -m generation fetch-weights` where a network is available."
        )
    allow_pickle = _trust_pickle() if allow_pickle is None else allow_pickle
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not allow_pickle:
            raise CheckpointError(
                f"checkpoint {path} holds pickled objects besides tensors ({exc}). If you trust the "
                f"file's source, load it with WEIGHTS_TRUST_PICKLE=1; otherwise download it again "
                f"and check it with `python -m generation verify-weights {path}`."
            ) from exc
        obj = _load_untrusted(path)
    except Exception as exc:  # torch raises many types for truncated/corrupt zips and pickles
        raise CheckpointError(
            f"checkpoint {path} could not be read ({type(exc).__name__}: {exc}). The file is probably "
            f"truncated or corrupt: download it again and check it with "
            f"`python -m generation verify-weights {path}`."
        ) from exc
    if inner_key is not None and isinstance(obj, Mapping) and inner_key in obj:
        obj = obj[inner_key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path} does not hold a flat state dict of tensors")
    return dict(obj)


def _load_untrusted(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {path} could not be read ({type(exc).__name__}: {exc}); download it again."
        ) from exc


def key_mismatches(found: Mapping[str, tuple], expected: Mapping[str, tuple]) -> list[str]:
    """Sentences naming the first missing, unexpected and mis-shaped keys (empty: they match)."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [f"{k}: found {tuple(found[k])} vs expected {tuple(expected[k])}" for k in expected if k in found and tuple(found[k]) != tuple(expected[k])]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s), first: {', '.join(missing[:5])}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s), first: {', '.join(unexpected[:5])}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es), first: {'; '.join(shapes[:3])}")
    return parts


def load_strict(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, what: str) -> None:
    """``module.load_state_dict(state_dict, strict=True)`` with a readable report of any mismatch.

    Lists the first missing, unexpected and wrongly shaped keys, so a user can tell a wrong file
    from wrong model flags.
    """
    problems = key_mismatches(
        {k: tuple(v.shape) for k, v in state_dict.items()}, {k: tuple(v.shape) for k, v in module.state_dict().items()}
    )
    if problems:
        raise CheckpointError(
            " ".join([f"{what}: the checkpoint does not match the model.", *problems,
                      "Check that the file is the right checkpoint and the model flags match its README."])
        )
    module.load_state_dict(state_dict, strict=True)


def read_keys_tsv(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Parse a ``key<TAB>shape`` listing (shape like ``(768, 3, 16, 16)`` or ``()``)."""
    out: dict[str, tuple[int, ...]] = {}
    for i, line in enumerate(Path(path).read_text().splitlines()):
        if not line.strip() or (i == 0 and line.startswith("key")):
            continue
        key, shape = line.split("\t")[:2]
        dims = shape.strip().strip("()[]").replace(" ", "")
        out[key] = tuple(int(d) for d in dims.split(",") if d)
    return out
