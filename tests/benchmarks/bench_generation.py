"""Benchmark of the generation core (run on demand, not part of the test suite).

    .venv/bin/python tests/benchmarks/bench_generation.py [--repeats 5] [--batch 2] [--steps 100]
        [--cpu-peak-gflops G] [--threads 1] [--no-gpu]

Measures, per configuration, the wall time of one sampling step (median of ``--repeats``) for:
the unguided DDPM step (the baseline measured in the same run), a guided step for each objective
(one grad-enabled UNet forward + one backward), and the reference codes' "naive" guided step
(an extra no-grad UNet forward in the sampler). Reports seconds per step and per image
(``--steps`` steps of a ``"100"`` respacing), FLOPs per step and per image counted with
``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per MAC), achieved FLOP/s and the fraction
of the device's peak, and ratios against the unguided step. One JSON line per figure.

Configurations: ``tiny`` (the test UNet and BLIP, fp32) on the CPU, always; ``full`` (the
256x256 uncond UNet and BLIP ViT-B @384, random weights, bf16 autocast) on a GPU when CUDA is
available, otherwise reported as skipped. The CPU has no known peak unless ``--cpu-peak-gflops``
is given; its fraction of peak is then ``null``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode, flop_registry  # noqa: E402

from generation.blip import BlipConfig, BlipScorer, tiny_blip  # noqa: E402
from generation.diffusion import Diffusion  # noqa: E402
from generation.guidance import Guide  # noqa: E402
from generation.pipeline import make_denoiser  # noqa: E402
from generation.tokenization import BlipTokenizer, tiny_vocab  # noqa: E402
from generation.unet import UNCOND_256_FLAGS, UNetConfig, UNetModel, tiny_unet  # noqa: E402

# Dense peak FLOP/s by device-name fragment: (bf16 tensor core, fp32 non-tensor), vendor datasheets.
GPU_PEAKS = {
    "H200": (989e12, 67e12), "H100 PCIe": (756e12, 51e12), "H100": (989e12, 67e12),
    "A100": (312e12, 19.5e12), "L40S": (362e12, 91.6e12), "A10": (125e12, 31.2e12),
}
PROMPT = "a red car parked on the street"


def emit(**fields) -> None:
    print(json.dumps(fields, sort_keys=True), flush=True)


def gpu_peak(device: torch.device, precision: str) -> float | None:
    name = torch.cuda.get_device_name(device)
    for frag, (bf16, fp32) in GPU_PEAKS.items():
        if frag in name:
            return bf16 if precision == "bf16" else fp32
    return None


def full_blip(device) -> BlipScorer:
    """BLIP base at 384 px with random weights; a filler vocabulary of BERT's size (30522 + 2)."""
    vocab = tiny_vocab()
    vocab += [f"[unused{i}]" for i in range(30522 - len(vocab))]
    tok = BlipTokenizer(vocab)
    with torch.device(device):
        model = BlipScorer(BlipConfig.base(image_size=384, vocab_size=len(tok)), tok)
    return model.eval().requires_grad_(False)


def step_functions(unet, blip, diffusion, x, precision):
    denoiser = make_denoiser(unet, precision)
    text = blip.encode_text([PROMPT] * x.shape[0])
    i, k = diffusion.num_timesteps // 2, diffusion.num_timesteps // 2
    t = diffusion.model_timestep(i, x.shape[0], x.device)
    noise = torch.randn_like(x)
    autocast = torch.bfloat16 if precision == "bf16" else None

    def unguided():
        with torch.no_grad():
            out = diffusion.p_mean_variance(denoiser(x, t), x, i)
            return diffusion.ddpm_step(out, i, noise)

    def guided(objective, naive=False):
        guide = Guide(diffusion, denoiser, blip, text, objective=objective, scale=1.0, autocast_dtype=autocast)

        def step():
            if naive:  # the reference codes' sampler forward, discarded by the guided branch
                with torch.no_grad():
                    denoiser(x, t)
            model_output, grad = guide(x, i, k)
            with torch.no_grad():
                out = diffusion.condition_mean(diffusion.p_mean_variance(model_output, x, i), grad)
                return diffusion.ddpm_step(out, i, noise)

        return step

    fns = {"unguided": unguided}
    for objective in ("ITC", "ITM", "CAP", "SHIFT"):
        fns[f"guided_{objective}"] = guided(objective)
    fns["guided_SHIFT_naive_two_forwards"] = guided("SHIFT", naive=True)
    return fns


def time_step(fn, device, repeats: int) -> float:
    fn()  # warm-up: kernels, caches, autotuning
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class _FlopCount(TorchDispatchMode):
    """FlopCounterMode's per-op formulas without its module tracker, whose backward hooks raise
    under ``torch.autograd.grad`` on a leaf (what guidance does)."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def count_flops(fn) -> int:
    with _FlopCount() as counter:
        fn()
    return counter.total


def bench(config: str, unet, blip, device, precision, batch, steps, repeats, peak):
    size = unet.config.image_size
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    diffusion = Diffusion("100")
    base = {"config": config, "device": device_name(device), "precision": precision, "batch": batch,
            "image_size": size, "blip_image_size": blip.config.image_size}
    seconds: dict[str, float] = {}
    for name, fn in step_functions(unet, blip, diffusion, x, precision).items():
        sec = seconds[name] = time_step(fn, device, repeats)
        flops = count_flops(fn)
        if name == "unguided":  # our counter must agree with FlopCounterMode where the latter works
            with FlopCounterMode(display=False) as reference:
                fn()
            emit(**base, figure="unguided.flops_match_FlopCounterMode", value=reference.get_total_flops() == flops, unit="bool")
        baseline = seconds["unguided"]
        achieved = flops / sec
        emit(**base, figure=f"{name}.seconds_per_step", value=sec, unit="s")
        emit(**base, figure=f"{name}.seconds_per_image", value=sec * steps / batch, unit="s", steps=steps)
        emit(**base, figure=f"{name}.flops_per_step_per_image", value=flops / batch, unit="FLOP")
        emit(**base, figure=f"{name}.achieved_flops_per_second", value=achieved, unit="FLOP/s")
        emit(**base, figure=f"{name}.fraction_of_peak", value=None if peak is None else achieved / peak,
             unit="1", peak=peak)
        emit(**base, figure=f"{name}.ratio_vs_unguided_step", value=sec / baseline, unit="1", baseline="unguided")
    naive, efficient = seconds["guided_SHIFT_naive_two_forwards"], seconds["guided_SHIFT"]
    emit(**base, figure="guided_SHIFT_naive_two_forwards.ratio_vs_guided_SHIFT", value=naive / efficient, unit="1",
         baseline="guided_SHIFT")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu:{platform.processor() or platform.machine()}:{torch.get_num_threads()}threads"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=2, help="images per step (tiny CPU config)")
    p.add_argument("--gpu-batch", type=int, default=1, help="images per step (full GPU config)")
    p.add_argument("--steps", type=int, default=100, help="steps per image for the per-image figure")
    p.add_argument("--cpu-peak-gflops", type=float, default=None)
    p.add_argument("--no-gpu", action="store_true")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU intra-op threads (1: the tiny model gains nothing from more, and shared machines lose a lot)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    cpu = torch.device("cpu")
    peak = args.cpu_peak_gflops * 1e9 if args.cpu_peak_gflops else None
    bench("tiny", tiny_unet(seed=0), tiny_blip(seed=0, image_size=32), cpu, "fp32", args.batch, args.steps,
          args.repeats, peak)

    if args.no_gpu or not torch.cuda.is_available():
        emit(config="full", figure="skipped", value=None, reason="no CUDA device" if not args.no_gpu else "--no-gpu")
        return 0
    gpu = torch.device("cuda")
    with torch.device(gpu):
        unet = UNetModel(UNetConfig.from_flags(**UNCOND_256_FLAGS)).eval().requires_grad_(False)
    blip = full_blip(gpu)
    for precision in ("bf16", "fp32"):
        bench("full", unet, blip, gpu, precision, args.gpu_batch, args.steps, args.repeats, gpu_peak(gpu, precision))
    return 0


if __name__ == "__main__":
    sys.exit(main())
