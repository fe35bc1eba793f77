"""Command line: ``python -m generation {render,fetch-weights,verify-weights}``.

    python -m generation render --prompt "a red bus" --objective SHIFT --seed 0 --out DIR [--preset NAME] [--weights DIR | --tiny]
    python -m generation presets
    python -m generation fetch-weights [--dir DIR] [NAME ...]
    python -m generation verify-weights FILE [--kind unet|blip|vocab]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m generation", description="BLIP-guided diffusion: render and manage weights")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("render", help="render images for one prompt and objective")
    r.add_argument("--prompt", required=True, action="append", help="prompt text (repeat for several)")
    r.add_argument("--objective", required=True, choices=("ITC", "ITM", "CAP", "SHIFT", "BLEND"))
    r.add_argument("--seed", type=int, action="append", help="seed index (repeat for several; default 0)")
    r.add_argument("--round-seed", type=int, default=0)
    r.add_argument("--out", required=True, help="output directory for PNGs and provenance.json")
    src = r.add_mutually_exclusive_group()
    src.add_argument("--weights", help="directory with the checkpoints (default: $WEIGHTS_DIR)")
    src.add_argument("--tiny", action="store_true", help="random tiny models, no files (for trying the pipeline)")
    r.add_argument("--preset", default=None,
                   help="named settings (see `python -m generation presets`); default: the spec file's "
                        "\"preset\", else 'tiny' with --tiny, else 'paper'")
    r.add_argument("--spec", help="JSON file with GenerationSpec fields, optionally {\"preset\": NAME, ...overrides}")
    r.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                   help="override one spec field, e.g. --set respacing='\"250\"' --set scale_shift=0.5")
    r.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")

    f = sub.add_parser("fetch-weights", help="download the registry's checkpoints (needs a network)")
    f.add_argument("names", nargs="*", help="files to fetch (default: all)")
    f.add_argument("--dir", help="target directory (default: $WEIGHTS_DIR)")

    v = sub.add_parser("verify-weights", help="check a checkpoint: size, readability, keys and shapes")
    v.add_argument("file")
    v.add_argument("--as", dest="as_name", help="registry name to check against when the file was renamed")
    v.add_argument("--no-size", action="store_true", help="skip the size check")
    sub.add_parser("list-weights", help="show the registry")
    sub.add_parser("presets", help="list the named presets and their settings")
    return p


def _spec(args):
    from generation.presets import PRESETS, spec_from_config
    from generation.spec import SpecError

    fields: dict = {}
    if args.spec:
        try:
            fields.update(_json_object(Path(args.spec).read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise SystemExit(f"error: --spec {args.spec}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SystemExit(f"error: --spec {args.spec}: cannot read it ({exc})") from None
        except ValueError as exc:
            raise SystemExit(f"error: --spec {args.spec}: {exc}") from None
    for item in args.set:
        name, _, raw = item.partition("=")
        try:
            fields[name] = json.loads(raw)
        except json.JSONDecodeError:
            fields[name] = raw  # bare strings: --set sampler=ddim
    preset = args.preset or fields.pop("preset", None) or ("tiny" if args.tiny else "paper")
    fields.pop("preset", None)
    if args.tiny and preset != "tiny" and preset in PRESETS:
        raise SystemExit(f"error: --tiny renders the 'tiny' preset's random models, not preset {preset!r}; drop one of them")
    try:
        return spec_from_config({"preset": preset, **fields})
    except SpecError as exc:
        raise SystemExit(f"error: {exc}") from None


def _json_object(text: str) -> dict:
    """The spec file's JSON object; ValueError with the line and column of a syntax error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(value, dict):
        raise ValueError(f"must hold a JSON object of spec fields, not {type(value).__name__}")
    return value


def _render(args) -> int:
    import torch

    from generation.checkpoints import CheckpointError
    from generation.images import png_bytes
    from generation.pipeline import load_models, render_batch

    spec = _spec(args)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    seeds = args.seed or [0]
    prompts = [p for p in args.prompt for _ in seeds]
    seed_list = [s for _ in args.prompt for s in seeds]
    try:
        models = load_models(spec, weights_dir=None if args.tiny else args.weights, device=device)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = render_batch(models, spec, objective=args.objective, prompts=prompts, seeds=seed_list,
                           round_seed=args.round_seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for n, res in enumerate(results):
        name = f"{n:04d}_{args.objective.lower()}_seed{res.provenance['seed']}.png"
        (out / name).write_bytes(png_bytes(res.image))
        records.append({"file": name, **res.provenance})
        print(f"{out / name}  itc={res.scores['itc']:.4f} itm={res.scores['itm']:.4f} cap={res.scores['cap']:.4f}")
    (out / "provenance.json").write_text(json.dumps({"images": records}, indent=2, sort_keys=True) + "\n")
    return 0


def _fetch(args) -> int:
    from generation.checkpoints import CheckpointError
    from generation.weights import fetch, weights_dir

    try:
        fetch(args.names or None, weights_dir(args.dir))
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _verify(args) -> int:
    from generation.checkpoints import CheckpointError
    from generation.weights import REGISTRY, verify_file

    entry = None
    if args.as_name:
        if args.as_name not in REGISTRY:
            print(f"error: --as {args.as_name!r} is not one of {', '.join(REGISTRY)}", file=sys.stderr)
            return 2
        entry = REGISTRY[args.as_name]
    try:
        report = verify_file(args.file, entry, check_size=not args.no_size)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, sort_keys=True))
    if not report["sha256_known"]:
        print("note: no published sha256 for this file; size, readability and keys were checked", file=sys.stderr)
    return 0


def _list(args) -> int:
    from generation.weights import REGISTRY

    for w in REGISTRY.values():
        print(json.dumps({"name": w.name, "kind": w.kind, "urls": list(w.urls), "size": w.size, "min_size": w.min_size,
                          "sha256": w.sha256 or "unknown", "note": w.note}))
    return 0


def _presets(args) -> int:
    from generation.presets import PRESETS, spec_from_config

    for p in PRESETS.values():
        print(json.dumps({"name": p.name, "label": p.label, "description": p.description,
                          "spec": spec_from_config({"preset": p.name}).to_dict()}, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {"render": _render, "fetch-weights": _fetch, "verify-weights": _verify, "list-weights": _list,
                "presets": _presets}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
