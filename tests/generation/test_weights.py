"""Weights registry, verify-weights and the download mechanics (file:// URLs, no network)."""

import argparse
import dataclasses
import json

import pytest
import torch

from generation.__main__ import main
from generation.checkpoints import CheckpointError, read_keys_tsv
from generation.weights import KEYS_DIR, REGISTRY, download, fetch, file_format, listing_bytes, verify_file

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
    assert verify_file(good, check_size=False)["tensors"] == 1272
    bad = listing_checkpoint(tmp_path / "model_base_capfilt_large.pth", listing, wrap="model",
                             drop=("itm_head.weight",), add=("itm_head.weights",))
    with pytest.raises(CheckpointError) as err:
        verify_file(bad, check_size=False)
    assert "missing key(s), first: itm_head.weight" in str(err.value)
    assert "unexpected key(s), first: itm_head.weights" in str(err.value)


def test_verify_missing_corrupt_truncated_and_unknown(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        verify_file(tmp_path / UNET.name)
    corrupt = tmp_path / "model_base.pth"
    corrupt.write_bytes(b"\x00not a checkpoint" * 100)
    with pytest.raises(CheckpointError, match="neither a torch zip checkpoint nor a legacy.*corrupt"):
        verify_file(corrupt, check_size=False)
    whole = listing_checkpoint(tmp_path / "x.pth", read_keys_tsv(KEYS_DIR / "blip_pretrain_base.keys.tsv"), wrap="model")
    corrupt.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="zip archive .* whose end is missing: truncated"):
        verify_file(corrupt, check_size=False)
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
    assert logs == ["vocab.txt: present and verified, skipped"]


# -- what a file really is (issue 14 item 7) ----------------------------------------------------


def test_blip_size_bound_comes_from_the_key_listing(tmp_path):
    """model_base.pth has no published size; its listing's fp32 tensor bytes bound it from below."""
    entry = REGISTRY["model_base.pth"]
    bound = listing_bytes(entry)
    numel = sum(torch.Size(s).numel() for s in read_keys_tsv(KEYS_DIR / entry.keys).values())
    assert bound == 4 * numel and bound > 800_000_000  # BLIP ViT-B + BERT text towers: > 200M parameters
    small = listing_checkpoint(tmp_path / "model_base.pth", read_keys_tsv(KEYS_DIR / entry.keys), wrap="model")
    with pytest.raises(CheckpointError, match=f"at least {bound} bytes of tensors: truncated"):
        verify_file(small)


def test_verify_names_a_pickled_config_object_and_how_to_load_it(tmp_path):
    listing = read_keys_tsv(KEYS_DIR / UNET.keys)
    sd = {k: torch.zeros(1).expand(shape) if shape else torch.zeros(()) for k, shape in listing.items()}
    path = tmp_path / UNET.name
    torch.save({**sd, "config": argparse.Namespace(lr=1e-4)}, path)
    with pytest.raises(CheckpointError) as err:
        verify_file(path, check_size=False)
    message = str(err.value)
    assert "argparse.Namespace" in message and "not corrupt" in message and "WEIGHTS_TRUST_PICKLE=1" in message
    assert "truncated" not in message


def test_verify_reads_a_legacy_non_zip_file_and_says_so(tmp_path):
    listing = read_keys_tsv(KEYS_DIR / UNET.keys)
    sd = {k: torch.zeros(shape) for k, shape in list(listing.items())[:3]}
    path = tmp_path / "legacy.pt"
    torch.save(sd, path, _use_new_zipfile_serialization=False)
    assert file_format(path) == "legacy"
    with pytest.raises(CheckpointError) as err:  # readable (not "corrupt"); only the keys are short
        verify_file(path, UNET, check_size=False)
    assert "missing key(s)" in str(err.value) and "corrupt" not in str(err.value)
    whole = tmp_path / "legacy_whole.pt"
    torch.save({k: torch.zeros(1).expand(s) if s else torch.zeros(()) for k, s in listing.items()}, whole,
               _use_new_zipfile_serialization=False)
    report = verify_file(whole, UNET, check_size=False)
    assert report["format"] == "legacy" and "legacy-format" in report["checks"] and report["tensors"] == 566


def test_file_format_tells_zip_truncated_zip_legacy_and_junk(tmp_path):
    z = tmp_path / "z.pt"
    torch.save({"a": torch.zeros(3)}, z)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(z.read_bytes()[:-30])
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"<html>not found</html>")
    assert [file_format(p) for p in (z, cut, junk)] == ["zip", "zip-truncated", "unknown"]


def test_fetch_downloads_again_over_a_truncated_present_file(tmp_path, monkeypatch):
    """A present model_base.pth cut short is checked, not skipped: fetch tries to download it again."""
    listing = read_keys_tsv(KEYS_DIR / "blip_pretrain_base.keys.tsv")
    whole = listing_checkpoint(tmp_path / "whole.pth", listing, wrap="model")
    dest = tmp_path / "w" / "model_base.pth"
    dest.parent.mkdir()
    dest.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    # The "server" is a local file: the whole checkpoint (never the network in a test).
    monkeypatch.setitem(REGISTRY, "model_base.pth", dataclasses.replace(REGISTRY["model_base.pth"], urls=(whole.as_uri(),)))
    monkeypatch.setattr("generation.weights.listing_bytes", lambda entry: None)  # stride-0 test file: no size bound
    logs = []
    assert fetch(["model_base.pth"], dest.parent, log=logs.append) == [dest]
    assert dest.read_bytes() == whole.read_bytes()
    assert logs[0].startswith("model_base.pth: present but") and "downloading again" in logs[0]
    assert "present and verified" not in " ".join(logs)
    logs.clear()
    assert fetch(["model_base.pth"], dest.parent, log=logs.append) == [dest]
    assert logs == ["model_base.pth: present and verified, skipped"]
