"""Benchmark of the generation core (run on demand, not part of the test suite).

Seconds per image (issue 14 item 5): ``per_image`` figures time one guided SHIFT step of the
``paper`` preset's guidance (blend image, 8 views, range loss) at batch 1/4/8 and multiply by
``--steps`` (100) / batch; ``reference_two_forwards`` adds the reference codes' extra no-grad UNet
forward per step, and ``ratio_vs_reference`` divides ours by it. On CUDA: the 256x256 UNet and BLIP
ViT-B at 224, fp32 and bf16. Without CUDA the same code runs on the tiny models only (no GPU
figure is measured; ``README.md`` says so). Target: <= 1.5 s/image on an H100-class GPU.

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


def full_blip(device, image_size: int = 384) -> BlipScorer:
    """BLIP base with random weights; a filler vocabulary of BERT's size (30522 + 2)."""
    vocab = tiny_vocab()
    vocab += [f"[unused{i}]" for i in range(30522 - len(vocab))]
    tok = BlipTokenizer(vocab)
    with torch.device(device):
        model = BlipScorer(BlipConfig.base(image_size=image_size, vocab_size=len(tok)), tok)
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


def bench_per_image(config, unet, blip, device, precision, batches, steps, repeats, views=8):
    """Seconds per image of the paper preset's guided step, ours and the reference's two forwards."""
    size = unet.config.image_size
    diffusion = Diffusion("100")
    i = k = diffusion.num_timesteps // 2
    autocast = torch.bfloat16 if precision == "bf16" else None
    denoiser = make_denoiser(unet, precision)
    for batch in batches:
        x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
        t = diffusion.model_timestep(i, batch, device)
        noise = torch.randn_like(x)
        text = blip.encode_text([PROMPT] * batch)
        gens = [torch.Generator().manual_seed(n) for n in range(batch)]
        guide = Guide(diffusion, denoiser, blip, text, objective="SHIFT", scale=100.0, autocast_dtype=autocast,
                      normalization="none", guided_image="blend", views=views, view_generators=gens,
                      range_weight=50.0, view_augment="affine_perspective", itc_loss="cos_temp", label_smoothing=0.1)

        def step(naive=False):
            if naive:
                with torch.no_grad():
                    denoiser(x, t)
            model_output, grad = guide(x, i, k)
            with torch.no_grad():
                out = diffusion.condition_mean(diffusion.p_mean_variance(model_output, x, i, clip_denoised=False), grad)
                return diffusion.ddpm_step(out, i, noise)

        ours = time_step(step, device, repeats)
        ref = time_step(lambda: step(naive=True), device, repeats)
        base = {"config": config, "device": device_name(device), "precision": precision, "batch": batch,
                "image_size": size, "blip_image_size": blip.config.image_size, "views": views, "steps": steps}
        emit(**base, figure="per_image.seconds_per_image", value=ours * steps / batch, unit="s")
        emit(**base, figure="per_image.reference_two_forwards.seconds_per_image", value=ref * steps / batch, unit="s")
        emit(**base, figure="per_image.ratio_vs_reference", value=ours / ref, unit="1", baseline="reference_two_forwards")
        if device.type == "cuda":
            emit(**base, figure="per_image.meets_target_1.5s", value=ours * steps / batch <= 1.5, unit="bool")


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
    p.add_argument("--batches", type=lambda v: [int(x) for x in v.split(",")], default=[1, 4, 8],
                   help="batch sizes of the per-image figures (default 1,4,8)")
    p.add_argument("--cpu-peak-gflops", type=float, default=None)
    p.add_argument("--no-gpu", action="store_true")
    p.add_argument("--no-tiny", action="store_true", help="skip the tiny CPU configuration (a GPU run's device time is short)")
    p.add_argument("--per-image-only", action="store_true", help="on the GPU, only the paper preset's per-image figures")
    p.add_argument("--cudnn-benchmark", action="store_true",
                   help="let cuDNN pick convolution kernels by timing them, and TF32 for fp32 matmuls (other rounding)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU intra-op threads (1: the tiny model gains nothing from more, and shared machines lose a lot)")
    p.add_argument("--precision-study", metavar="RESPACING", default=None,
                   help="instead: the precision study on the full-size UNet on the CPU (e.g. '10' steps)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.precision_study:
        precision_study(args.precision_study, seed=0)
        return 0

    cpu = torch.device("cpu")
    peak = args.cpu_peak_gflops * 1e9 if args.cpu_peak_gflops else None
    if not args.no_tiny:
        bench("tiny", tiny_unet(seed=0), tiny_blip(seed=0, image_size=32), cpu, "fp32", args.batch, args.steps,
              args.repeats, peak)
        for precision in ("fp32", "bf16"):
            bench_per_image("tiny", tiny_unet(seed=0), tiny_blip(seed=0, image_size=32), cpu, precision, args.batches,
                            args.steps, args.repeats)

    if args.no_gpu or not torch.cuda.is_available():
        emit(config="full", figure="skipped", value=None, reason="no CUDA device" if not args.no_gpu else "--no-gpu")
        return 0
    gpu = torch.device("cuda")
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = args.cudnn_benchmark
    emit(config="full", figure="settings", value=None, cudnn_benchmark=torch.backends.cudnn.benchmark,
         matmul_tf32=torch.backends.cuda.matmul.allow_tf32, conv_tf32=torch.backends.cudnn.allow_tf32,
         torch=torch.__version__)
    with torch.device(gpu):
        unet = UNetModel(UNetConfig.from_flags(**UNCOND_256_FLAGS)).eval().requires_grad_(False)
    blip = full_blip(gpu)
    for precision in () if args.per_image_only else ("bf16", "fp32"):
        bench("full", unet, blip, gpu, precision, args.gpu_batch, args.steps, args.repeats, gpu_peak(gpu, precision))
    paper_blip = full_blip(gpu, image_size=224)  # the pretrain checkpoints' training resolution
    for precision in ("fp32", "bf16"):
        bench_per_image("full", unet, paper_blip, gpu, precision, args.batches, args.steps, args.repeats)
    return 0


# ---------------------------------------------------------------------------------------------
# Precision study (``--precision-study``): the full-size UNet, random weights, CPU
# ---------------------------------------------------------------------------------------------


def random_full_unet(seed: int = 0, flags=None) -> UNetModel:
    """The 256x256 uncond UNet with scaled-normal random weights (zero-initialised convs included,
    else the output is exactly 0), its output conv rescaled so that eps has unit RMS at x_T."""
    model = UNetModel(UNetConfig.from_flags(**(flags or UNCOND_256_FLAGS)))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=gen) / p[0].numel() ** 0.5)
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
    return model.eval().requires_grad_(False)


class Fp16Emulation:
    """guided-diffusion's ``use_fp16`` path, emulated on the CPU (CPU fp16 convolutions are ~200x
    slower than fp32 here): conv weights of the input/middle/output blocks rounded to fp16 (what
    ``convert_module_to_f16`` stores), and every submodule output inside those blocks rounded to fp16
    (the activations upstream keeps in fp16; its GroupNorm and softmax compute in fp32 and cast
    back, which rounding the output reproduces). Products accumulate in fp32, as on tensor cores.
    ``time_embed`` and ``out`` stay fp32, as upstream."""

    def __init__(self, model: UNetModel):
        self.model, self.handles, self.saved = model, [], {}

    def __enter__(self):
        round16 = lambda t: t.half().float() if isinstance(t, torch.Tensor) and t.is_floating_point() else t  # noqa: E731
        blocks = [self.model.input_blocks, self.model.middle_block, self.model.output_blocks]
        with torch.no_grad():
            for block in blocks:
                for name, mod in block.named_modules():
                    if isinstance(mod, (torch.nn.Conv1d, torch.nn.Conv2d)):
                        for pn, p in mod.named_parameters(recurse=False):
                            self.saved[(id(mod), pn)] = (mod, pn, p.detach().clone())
                            p.copy_(round16(p))
                    self.handles.append(mod.register_forward_hook(
                        lambda _m, _i, out: tuple(map(round16, out)) if isinstance(out, tuple) else round16(out)))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        with torch.no_grad():
            for mod, pn, value in self.saved.values():
                getattr(mod, pn).copy_(value)
        return False


def precision_study(respacing: str, seed: int, flags=None) -> None:
    """x̂0 and final-image error of bf16 autocast and of the fp16 path against fp32, per timestep.

    Per step k of an unguided DDPM run (paired noise): ``x0_one_step``: x̂0 computed from the *fp32*
    trajectory's x_t in each precision (the error one step makes), and ``x0_trajectory``: x̂0 along
    the precision's own trajectory (errors compounded). Final image: RMS and max of the [-1, 1]
    sample, and the share of uint8 pixel values that differ.
    """
    from generation.images import to_uint8
    from generation.sampling import per_image_noise

    unet = random_full_unet(seed, flags)
    diffusion = Diffusion(respacing)
    gen = torch.Generator().manual_seed(seed + 1)
    size = unet.config.image_size
    x_T = torch.randn(1, 3, size, size, generator=gen)
    with torch.no_grad():  # unit-RMS eps at x_T, v within [-1, 1] mostly: a sane operating point
        out = unet(x_T, diffusion.model_timestep(diffusion.num_timesteps - 1, 1, "cpu"))
        unet.out[-1].weight.div_(out[:, :3].pow(2).mean().sqrt())
        unet.out[-1].bias.div_(out[:, :3].pow(2).mean().sqrt())

    def denoise(precision):
        def f(x, t):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                return unet(x, t).float()
        return f

    def run(precision, along=None):
        if precision == "fp16":
            with Fp16Emulation(unet):
                return run("fp16-emulated", along)
        noise_gen = torch.Generator().manual_seed(seed + 2)
        f, x, xs, x0s, x0_at = denoise(precision), x_T.clone(), [], [], []
        for k in range(diffusion.num_timesteps):
            i = diffusion.num_timesteps - 1 - k
            t = diffusion.model_timestep(i, 1, "cpu")
            with torch.no_grad():
                started = time.perf_counter()
                mo = f(x, t)
                o = diffusion.p_mean_variance(mo, x, i, clip_denoised=False)
                xs.append(x)
                x0s.append(o.pred_xstart)
                if along is not None:
                    x0_at.append(diffusion.predict_xstart(along[k], i, f(along[k], t)[:, :3]))
                x = diffusion.ddpm_step(diffusion.p_mean_variance(mo, x, i), i, per_image_noise([noise_gen], (3, size, size), "cpu"))
                print(json.dumps({"progress": precision, "step": k, "seconds": round(time.perf_counter() - started, 1)}), file=sys.stderr, flush=True)
        return xs, x0s, x0_at, x

    ref_xs, ref_x0s, _, ref_final = run("fp32")
    rms = lambda t: float(t.pow(2).mean().sqrt())  # noqa: E731
    for precision in ("bf16", "fp16"):
        _, x0s, x0_at, final = run(precision, along=ref_xs)
        base = {"config": "precision_study", "precision": precision, "baseline": "fp32", "respacing": respacing,
                "device": device_name(torch.device("cpu")), "unet": "guided-diffusion-256-uncond random weights"}
        for k in range(diffusion.num_timesteps):
            i = diffusion.num_timesteps - 1 - k
            amp = float(diffusion.sqrt_recipm1_alphas_cumprod[i])
            emit(**base, figure="x0_one_step.rms_error", step=k, timestep=int(diffusion.timestep_map[i]),
                 eps_to_x0_amplification=amp, value=rms(x0_at[k] - ref_x0s[k]), unit="[-1,1] units",
                 x0_rms=rms(ref_x0s[k]))
            emit(**base, figure="x0_trajectory.rms_error", step=k, timestep=int(diffusion.timestep_map[i]),
                 value=rms(x0s[k] - ref_x0s[k]), unit="[-1,1] units")
        diff8 = (to_uint8(final).astype("int16") - to_uint8(ref_final).astype("int16"))
        emit(**base, figure="final.rms_error", value=rms(final.clamp(-1, 1) - ref_final.clamp(-1, 1)), unit="[-1,1] units")
        emit(**base, figure="final.max_abs_error", value=float((final.clamp(-1, 1) - ref_final.clamp(-1, 1)).abs().max()), unit="[-1,1] units")
        emit(**base, figure="final.uint8_share_differing", value=float((diff8 != 0).mean()), unit="1")
        emit(**base, figure="final.uint8_max_abs_difference", value=int(abs(diff8).max()), unit="levels of 255")


if __name__ == "__main__":
    sys.exit(main())
