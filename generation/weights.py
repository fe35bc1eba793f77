"""Registry of the known checkpoints, download (``fetch-weights``) and checks (``verify-weights``).

Loading never downloads: ``pipeline.load_models`` only reads ``WEIGHTS_DIR``. URLs and sizes are
from ``reference/GENERATION.md`` §2.1 and §6.2; a sha256 that no public source states is
recorded as unknown (``None``), and verification then relies on size, readability and the
key/shape listing instead.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from generation.checkpoints import CheckpointError, key_mismatches, read_keys_tsv, sha256_file

KEYS_DIR = Path(__file__).resolve().parent / "keys"
_BLIP_BASE_URL = "https://storage.googleapis.com/sfr-vision-language-research/BLIP/models/"


@dataclass(frozen=True)
class WeightFile:
    """One file of the registry.

    ``size``: exact bytes when known; ``min_size``: a lower bound (the fp32 tensor bytes) when
    only that is known; ``sha256``: ``None`` when unknown; ``keys``: listing file in ``keys/``.
    """

    name: str
    kind: str  # "unet" | "blip" | "vocab"
    urls: tuple[str, ...]
    size: int | None = None
    min_size: int | None = None
    sha256: str | None = None
    keys: str | None = None
    inner_key: str | None = None
    note: str = ""


REGISTRY: dict[str, WeightFile] = {
    w.name: w
    for w in (
        WeightFile(
            "256x256_diffusion_uncond.pt", "unet",
            ("https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt",
             "https://huggingface.co/omriav/blended-diffusion/resolve/main/checkpoints/256x256_diffusion_uncond.pt"),
            # 552,814,086 fp32 parameters; the zip container adds a little on top.
            min_size=2_211_256_344, keys="guided_diffusion_256x256_uncond.keys.tsv",
            note="guided-diffusion 256x256 unconditional (fp32, ~2.2 GB); sha256 not published",
        ),
        WeightFile(
            "model_base.pth", "blip", (_BLIP_BASE_URL + "model_base.pth",),
            keys="blip_pretrain_base.keys.tsv", inner_key="model",
            note="BLIP pretrain ViT-B, 129M images (~2 GB, unverified); sha256 not published",
        ),
        WeightFile(
            "model_base_capfilt_large.pth", "blip", (_BLIP_BASE_URL + "model_base_capfilt_large.pth",),
            keys="blip_pretrain_base.keys.tsv", inner_key="model",
            note="BLIP pretrain ViT-B, 129M + CapFilt-L (~2 GB, unverified); sha256 not published",
        ),
        WeightFile(
            "vocab.txt", "vocab",
            ("https://huggingface.co/Salesforce/blip-image-captioning-base/resolve/main/vocab.txt",),
            note="bert-base-uncased WordPiece vocabulary (30522 lines, ~232 kB)",
        ),
    )
}

# Which registry files a GenerationSpec preset needs.
PRESET_FILES = {
    "guided-diffusion-256-uncond": ("256x256_diffusion_uncond.pt",),
    "model_base": ("model_base.pth", "vocab.txt"),
    "model_base_capfilt_large": ("model_base_capfilt_large.pth", "vocab.txt"),
}


def weights_dir(explicit: str | os.PathLike | None = None) -> Path:
    """``explicit``, else ``$WEIGHTS_DIR``; raises a :class:`CheckpointError` saying what to set."""
    value = explicit or os.environ.get("WEIGHTS_DIR")
    if not value:
        raise CheckpointError("no weights directory: set WEIGHTS_DIR, or pass one (render --weights DIR, fetch-weights --dir DIR)")
    return Path(value)


# -- verification ------------------------------------------------------------------------------


def compare_shapes(found: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]], *, what: str) -> None:
    """Raise a :class:`CheckpointError` naming the first missing, unexpected and mis-shaped keys."""
    problems = key_mismatches(found, expected)
    if problems:
        raise CheckpointError(" ".join([f"{what}: keys do not match the listing.", *problems]))


# The first bytes of a legacy (pre-1.6, ``_use_new_zipfile_serialization=False``) torch.save file:
# pickle protocol 2 and torch's magic number 0x1950a86a20f9469cfc6c as a pickled long.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"


def file_format(path: str | os.PathLike) -> str:
    """``"zip"`` (torch >= 1.6), ``"zip-truncated"`` (a zip's start without its end), ``"legacy"``
    (pre-zip torch.save), or ``"unknown"``."""
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_MAGIC))
    if zipfile.is_zipfile(path):
        return "zip"
    if head.startswith(b"PK\x03\x04"):
        return "zip-truncated"
    if head == _LEGACY_MAGIC:
        return "legacy"
    return "unknown"


def pickled_global(exc: Exception) -> str:
    """The class torch's safe loader refused, from its message (e.g. ``argparse.Namespace``)."""
    match = re.search(r"GLOBAL ([\w.]+)", str(exc))
    return f"the first is {match.group(1)}" if match else "a class the safe loader does not allow"


def listing_bytes(entry: WeightFile) -> int | None:
    """fp32 bytes of the tensors in ``entry``'s key listing: a lower bound on the file's size."""
    if entry.keys is None:
        return None
    total = 0
    for shape in read_keys_tsv(KEYS_DIR / entry.keys).values():
        n = 1
        for d in shape:
            n *= d
        total += 4 * n
    return total


def guess_entry(path: str | os.PathLike) -> WeightFile | None:
    return REGISTRY.get(Path(path).name)


def verify_file(path: str | os.PathLike, entry: WeightFile | None = None, *, check_size: bool = True) -> dict:
    """Check a weights file: present, expected size, sha256 (when known), readable, keys/shapes.

    Parameters
    ----------
    path: the file.
    entry: its registry entry; guessed from the file name when ``None``.
    check_size: compare with the registry's size/lower bound.

    Returns
    -------
    dict: ``name``, ``path``, ``bytes``, ``sha256``, ``tensors`` (or ``lines`` for a vocab), ``checks``.

    Raises
    ------
    CheckpointError: missing, wrong size (truncated), wrong sha256, unreadable/corrupt, or keys
        that differ from the listing (first missing and unexpected keys named).
    """
    import torch

    path = Path(path)
    entry = entry or guess_entry(path)
    if entry is None:
        raise CheckpointError(
            f"{path.name} is not a known weights file ({', '.join(REGISTRY)}); use its official name or say which it is with --as NAME"
        )
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found. Run `python -m generation fetch-weights` or copy it there.")
    size = path.stat().st_size
    checks = []
    if check_size and entry.size is not None and size != entry.size:
        raise CheckpointError(f"{path}: {size} bytes, expected {entry.size}: truncated or wrong file, download it again")
    min_size = entry.min_size if entry.min_size is not None else listing_bytes(entry)
    if check_size and min_size is not None and size < min_size:
        raise CheckpointError(
            f"{path}: {size} bytes, but {entry.name} holds at least {min_size} bytes of tensors: "
            f"truncated or wrong file, download it again"
        )
    checks.append("size")
    digest = sha256_file(path)
    if entry.sha256 is not None:
        if digest != entry.sha256:
            raise CheckpointError(f"{path}: sha256 {digest} differs from the published {entry.sha256}; download it again")
        checks.append("sha256")
    report = {"name": entry.name, "path": str(path), "bytes": size, "sha256": digest,
              "sha256_known": entry.sha256 is not None}
    if entry.kind == "vocab":
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (UnicodeDecodeError, OSError) as exc:
            raise CheckpointError(f"{path}: not a readable UTF-8 vocabulary ({exc})") from exc
        if len(lines) != 30522 or "[CLS]" not in lines or "[SEP]" not in lines:
            raise CheckpointError(f"{path}: {len(lines)} lines; bert-base-uncased's vocab.txt has 30522 with [CLS]/[SEP]")
        report.update(lines=len(lines), checks=checks + ["vocab"])
        return report
    fmt = file_format(path)
    report["format"] = fmt
    if fmt == "zip-truncated":
        raise CheckpointError(
            f"{path} is a zip archive (torch's format) whose end is missing: truncated, download it again "
            f"(`python -m generation fetch-weights {entry.name}`)"
        )
    if fmt == "unknown":
        raise CheckpointError(
            f"{path} is neither a torch zip checkpoint nor a legacy torch.save file (it starts with "
            f"{path.read_bytes()[:8]!r}): a wrong or corrupt file, download it again"
        )
    try:
        # Legacy (non-zip) files cannot be memory-mapped; they load whole.
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=fmt == "zip")
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path} is readable but pickles Python objects besides tensors ({pickled_global(exc)}), which a safe "
            f"load refuses; it is not corrupt. If you trust its source, load it with WEIGHTS_TRUST_PICKLE=1 "
            f"(torch.load(..., weights_only=False) runs its pickle code), or re-save only its state dict: "
            f"torch.save(torch.load(path, weights_only=False){'[' + repr(entry.inner_key) + ']' if entry.inner_key else ''}, path)"
        ) from exc
    except Exception as exc:  # truncated zips and corrupt pickles raise many types
        raise CheckpointError(
            f"{path} could not be read ({type(exc).__name__}: {exc}): truncated or corrupt, download it again"
        ) from exc
    if fmt == "legacy":
        checks.append("legacy-format")
    checks.append("readable")
    if entry.inner_key is not None and isinstance(obj, dict) and entry.inner_key in obj:
        obj = obj[entry.inner_key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    if entry.keys is not None:
        expected = read_keys_tsv(KEYS_DIR / entry.keys)
        compare_shapes({k: tuple(v.shape) for k, v in obj.items()}, expected, what=str(path))
        checks.append("keys")
    report.update(tensors=len(obj), checks=checks)
    return report


# -- download ----------------------------------------------------------------------------------


def download(url: str, dest: str | os.PathLike, *, expected_size: int | None = None, min_size: int | None = None,
             sha256: str | None = None, progress: Callable[[int, int | None], None] | None = None,
             timeout: float = 60.0) -> Path:
    """Stream ``url`` to ``dest`` via ``dest.part`` and an atomic rename, checking the size.

    The size must equal the server's Content-Length (and ``expected_size`` / ``min_size`` /
    ``sha256`` when given); otherwise the partial file is removed and a :class:`CheckpointError`
    raised. Not resumable: a failed download starts over.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    h = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(part, "wb") as f:
            length = resp.headers.get("Content-Length")
            total = int(length) if length else None
            while block := resp.read(1 << 20):
                f.write(block)
                h.update(block)
                received += len(block)
                if progress:
                    progress(received, total)
            f.flush()
            os.fsync(f.fileno())
        problems = []
        if total is not None and received != total:
            problems.append(f"received {received} of {total} bytes")
        if expected_size is not None and received != expected_size:
            problems.append(f"{received} bytes, expected {expected_size}")
        if min_size is not None and received < min_size:
            problems.append(f"{received} bytes, expected at least {min_size}")
        if sha256 is not None and h.hexdigest() != sha256:
            problems.append(f"sha256 {h.hexdigest()} differs from {sha256}")
        if problems:
            raise CheckpointError(f"download of {url} failed: {'; '.join(problems)}")
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return dest


def fetch(names: list[str] | None, directory: str | os.PathLike, *, log: Callable[[str], None] = print) -> list[Path]:
    """Download registry files missing from ``directory`` (tries each URL in turn)."""
    directory = Path(directory)
    unknown = [n for n in names or [] if n not in REGISTRY]
    if unknown:
        raise CheckpointError(f"unknown weights file(s) {', '.join(unknown)}; known: {', '.join(REGISTRY)}")
    out = []
    for name in names or list(REGISTRY):
        entry = REGISTRY[name]
        dest = directory / name
        if dest.is_file():
            try:
                # The full check (size bound, readable archive, keys and shapes): a truncated file
                # with the right name must not pass as "present".
                verify_file(dest, entry)
                log(f"{name}: present and verified, skipped")
                out.append(dest)
                continue
            except CheckpointError as exc:
                log(f"{name}: present but {exc}; downloading again")
        errors = []
        for url in entry.urls:
            log(f"{name}: downloading {url}")
            try:
                out.append(download(url, dest, expected_size=entry.size, min_size=entry.min_size, sha256=entry.sha256))
                break
            except (OSError, CheckpointError) as exc:
                errors.append(f"{url}: {exc}")
        else:
            raise CheckpointError(f"could not download {name}: " + " | ".join(errors))
    return out
