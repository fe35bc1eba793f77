"""The shipped toy weights: files under ``weights/`` and a manifest with their sha256.

Each entry of ``weights/manifest.json`` records the file's sha256 and size, the command and
seeds that made it, the model config needed to rebuild the module and the training metrics.
Weights are stored as float16 (half the bytes; the toy models lose nothing measurable) and
come back as float32. Loading always checks the checksum first.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from generation.checkpoints import CheckpointError, sha256_file

WEIGHTS_DIR = Path(__file__).with_name("weights")
MANIFEST = "manifest.json"


def read_manifest(weights_dir: str | os.PathLike = WEIGHTS_DIR) -> dict[str, dict[str, Any]]:
    path = Path(weights_dir) / MANIFEST
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def entry(name: str, weights_dir: str | os.PathLike = WEIGHTS_DIR) -> dict[str, Any]:
    manifest = read_manifest(weights_dir)
    if name not in manifest:
        raise CheckpointError(
            f"no toy weights named {name!r} in {Path(weights_dir) / MANIFEST} (have: {sorted(manifest)}); "
            f"train them with `python -m generation.toyworld.train_{name} --help`"
        )
    return manifest[name]


def verified_path(name: str, weights_dir: str | os.PathLike = WEIGHTS_DIR) -> Path:
    """The weight file of ``name``, after checking its sha256 against the manifest."""
    info = entry(name, weights_dir)
    path = Path(weights_dir) / info["file"]
    if not path.is_file():
        raise CheckpointError(f"toy weights {path} are missing (the manifest lists them)")
    digest = sha256_file(path)
    if digest != info["sha256"]:
        raise CheckpointError(
            f"toy weights {path} have sha256 {digest[:12]}..., the manifest says {info['sha256'][:12]}...: "
            f"the file is corrupt or was replaced without updating {MANIFEST}"
        )
    return path


def load_state_dict(name: str, weights_dir: str | os.PathLike = WEIGHTS_DIR) -> tuple[dict[str, torch.Tensor], dict]:
    """``(float32 state dict, manifest entry)`` of verified toy weights."""
    path = verified_path(name, weights_dir)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}, entry(name, weights_dir)


def save_weights(
    name: str,
    state_dict: Mapping[str, torch.Tensor],
    info: Mapping[str, Any],
    weights_dir: str | os.PathLike = WEIGHTS_DIR,
) -> Path:
    """Write ``<name>.pt`` (float16) and its manifest entry (sha256, size, ``info``)."""
    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    path = weights_dir / f"{name}.pt"
    half = {k: (v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu())
            for k, v in state_dict.items()}
    torch.save(half, path)
    manifest = read_manifest(weights_dir)
    manifest[name] = {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size, **info}
    (weights_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def promote(run_dir: str | os.PathLike, name: str, weights_dir: str | os.PathLike = WEIGHTS_DIR) -> dict:
    """Copy a finished run's ``<name>.pt`` and manifest entry into the shipped weights.

    The recorded command loses its ``--out <run_dir>`` (the default output is the shipped folder),
    so it reads as the one command that makes the shipped file.
    """
    import shlex
    import shutil

    info = dict(entry(name, run_dir))
    src = verified_path(name, run_dir)
    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, weights_dir / info["file"])
    words = shlex.split(info["command"])
    kept = [w for i, w in enumerate(words) if w != "--out" and not (i and words[i - 1] == "--out") and not w.startswith("--out=")]
    info["command"] = shlex.join(kept)
    manifest = read_manifest(weights_dir)
    manifest[name] = info
    (weights_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    verified_path(name, weights_dir)
    return info


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Copy a training run's weights into generation/toyworld/weights/.")
    ap.add_argument("command", choices=["promote", "verify"])
    ap.add_argument("run_dir", nargs="?")
    ap.add_argument("name", nargs="?")
    a = ap.parse_args()
    if a.command == "promote":
        print(json.dumps(promote(a.run_dir, a.name), indent=1))
    else:
        for n in read_manifest():
            print(n, verified_path(n), "ok")
