"""Weights registry, verify-weights and the download mechanics (file:// URLs, no network)."""

import json

import pytest
import torch

from generation.__main__ import main
from generation.checkpoints import CheckpointError, read_keys_tsv
from generation.weights import KEYS_DIR, REGISTRY, download, fetch, verify_file

UNET = REGISTRY["256x256_diffusion_uncond.pt"]


def listing_checkpoint(path, listing, *, drop=(), add=(), wrap=None):
    """A file with every listed key and shape but stride-0 storage: a few kB instead of GBs."""
    sd = {k: torch.zeros(1).expand(shape) if shape else torch.zeros(()) for k, shape in listing.items() if k not in drop}
    sd.update({k: torch.zeros(1) for k in add})
    torch.save({wrap: sd} if wrap else sd, path)
    return path


def test_registry_has_the_official_urls_and_unknown_hashes():
    assert UNET.urls[0] == "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt"
    assert UNET.min_size == 552_814_086 * 4 and UNET.sha256 is None
    assert REGISTRY["model_base.pth"].urls[0].startswith("https://storage.googleapis.com/sfr-vision-language-research/BLIP/models/")
    assert all(w.sha256 is None or len(w.sha256) == 64 for w in REGISTRY.values())


def test_verify_passes_on_matching_keys_and_reports_size(tmp_path):
    path = listing_checkpoint(tmp_path / UNET.name, read_keys_tsv(KEYS_DIR / UNET.keys))
    report = verify_file(path, check_size=False)
    assert report["tensors"] == 566 and report["checks"] == ["size", "readable", "keys"]
    assert report["sha256_known"] is False and len(report["sha256"]) == 64
    with pytest.raises(CheckpointError, match="truncated or wrong file"):
        verify_file(path)  # a few kB cannot hold 2.2 GB of tensors


def test_verify_blip_with_model_wrapper_and_key_errors(tmp_path):
    listing = read_keys_tsv(KEYS_DIR / "blip_pretrain_base.keys.tsv")
    good = listing_checkpoint(tmp_path / "model_base.pth", listing, wrap="model")
    assert verify_file(good)["tensors"] == 1272
    bad = listing_checkpoint(tmp_path / "model_base_capfilt_large.pth", listing, wrap="model",
                             drop=("itm_head.weight",), add=("itm_head.weights",))
    with pytest.raises(CheckpointError) as err:
        verify_file(bad)
    assert "missing key(s), first: itm_head.weight" in str(err.value)
    assert "unexpected key(s), first: itm_head.weights" in str(err.value)


def test_verify_missing_corrupt_truncated_and_unknown(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        verify_file(tmp_path / UNET.name)
    corrupt = tmp_path / "model_base.pth"
    corrupt.write_bytes(b"\x00not a checkpoint" * 100)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        verify_file(corrupt)
    whole = listing_checkpoint(tmp_path / "x.pth", read_keys_tsv(KEYS_DIR / "blip_pretrain_base.keys.tsv"), wrap="model")
    corrupt.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        verify_file(corrupt)
    with pytest.raises(CheckpointError, match="--as"):
        verify_file(whole)


def test_verify_cli(tmp_path, capsys):
    path = listing_checkpoint(tmp_path / "renamed.pt", read_keys_tsv(KEYS_DIR / UNET.keys), drop=("out.2.bias",))
    assert main(["verify-weights", str(path), "--as", UNET.name, "--no-size"]) == 1
    assert "out.2.bias" in capsys.readouterr().err
    good = listing_checkpoint(tmp_path / "good.pt", read_keys_tsv(KEYS_DIR / UNET.keys))
    assert main(["verify-weights", str(good), "--as", UNET.name, "--no-size"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["tensors"] == 566


def test_download_is_atomic_and_checks_size(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 5000)
    dest = tmp_path / "w" / "file.bin"
    assert download(src.as_uri(), dest, expected_size=5000) == dest
    assert dest.read_bytes() == src.read_bytes() and not list(dest.parent.glob("*.part"))
    other = tmp_path / "w" / "other.bin"
    with pytest.raises(CheckpointError, match="expected 6000"):
        download(src.as_uri(), other, expected_size=6000)
    assert not other.exists() and not list(other.parent.glob("*.part"))


def test_fetch_rejects_unknown_names_and_skips_present_files(tmp_path):
    with pytest.raises(CheckpointError, match="unknown weights file"):
        fetch(["model_huge.pth"], tmp_path)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[CLS]", "[SEP]"] + [f"w{i}" for i in range(30519)]) + "\n")
    logs = []
    assert fetch(["vocab.txt"], tmp_path, log=logs.append) == [vocab]
    assert logs == ["vocab.txt: present, skipped"]
