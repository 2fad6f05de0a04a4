"""PolyNorm and PolyNorm-times-up on the GPU: fused Triton kernels against eager PyTorch, torch.compile and the
memory floor measured in the same run.

    python -m benchmarks.polynorm_bench [--rows 16384] [--cols 16384]

Default shape: 16,384 tokens x the 12.7B model's FFN width 16,384, bf16. Floors: forward reads x (and up) and
writes y; forward+backward adds reading x and dy (and up) and writing dx (and dup), all at the device-to-device
copy bandwidth measured here. Results are checked against the fp32 reference before timing.
"""

import argparse

import torch

from benchmarks.timing import kernel_ms, median_ms
from kernels.polynorm import polynorm, polynorm_reference


def copy_bandwidth(numel: int) -> float:
    """Bytes per ms (read + write) of a bf16 device-to-device copy of ``numel`` elements."""
    src = torch.empty(numel, device="cuda", dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 2 / median_ms(lambda: dst.copy_(src))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=16384)
    parser.add_argument("--cols", type=int, default=16384)
    args = parser.parse_args()
    torch.manual_seed(0)
    shape = (args.rows, args.cols)
    x = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
    up = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
    dy = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
    weight = torch.tensor([0.4, -0.7, 1.1], device="cuda", requires_grad=True)
    bias = torch.tensor([0.3], device="cuda", requires_grad=True)
    bandwidth = copy_bandwidth(x.numel())
    tensor_bytes = x.numel() * 2
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}; shape {shape} bf16; "
          f"copy bandwidth {bandwidth / 1e9:.2f} TB/s")
    compiled_reference = torch.compile(polynorm_reference)
    print("wall-clock median per call; in parentheses the GPU kernel time per call (torch.profiler)")
    print("| op | pass | eager ms | torch.compile ms | Triton ms | floor ms | Triton / floor | compile / Triton | eager / Triton |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, u in (("PolyNorm", None), ("PolyNorm * up", up)):
        # correctness first: bf16 kernels against the fp32 reference, forward and gradients
        leaves = [t.detach().clone().requires_grad_() for t in (x, weight, bias)] + ([u.detach().clone().requires_grad_()] if u is not None else [])
        out = polynorm(leaves[0], leaves[1], leaves[2], 1e-6, up=leaves[3] if u is not None else None, impl="triton")
        out.backward(dy)
        ref_leaves = [t.detach().float().requires_grad_() for t in leaves]
        ref = polynorm_reference(ref_leaves[0], ref_leaves[1], ref_leaves[2], 1e-6, up=ref_leaves[3] if u is not None else None)
        ref.backward(dy.float())
        for a, b in [(out, ref)] + [(p.grad, q.grad) for p, q in zip(leaves, ref_leaves)]:
            scale = b.abs().max().item()
            error = (a.float() - b).abs().max().item() / scale
            assert error < 2e-2, (name, error)  # bf16 output rounding (2^-8) plus accumulation order
        inputs = 2 if u is not None else 1
        floors = {"forward": (inputs + 1) * tensor_bytes / bandwidth,
                  "forward+backward": ((inputs + 1) + (inputs + 1) + inputs) * tensor_bytes / bandwidth}
        for pass_name, floor in floors.items():
            def run(fn, train=pass_name != "forward"):
                xs = x.detach().requires_grad_(train)
                us = u.detach().requires_grad_(train) if u is not None else None
                with torch.set_grad_enabled(train):  # a forward-only pass saves nothing for backward
                    y = fn(xs, weight, bias, 1e-6, up=us) if fn is not polynorm else polynorm(xs, weight, bias, 1e-6, up=us, impl="triton")
                if train:  # gradients returned, not accumulated into .grad (no extra copies in the timing)
                    torch.autograd.grad(y, [xs, weight, bias] + ([us] if us is not None else []), dy)
            paths = (("eager", polynorm_reference), ("compile", compiled_reference), ("triton", polynorm))
            times = {label: median_ms(lambda f=fn: run(f), inner=5) for label, fn in paths}
            gpu = {label: kernel_ms(lambda f=fn: run(f)) for label, fn in paths}
            print(f"| {name} | {pass_name} | {times['eager']:.3f} | {times['compile']:.3f} ({gpu['compile']:.3f}) | "
                  f"{times['triton']:.3f} ({gpu['triton']:.3f}) | {floor:.3f} | {times['triton'] / floor:.2f} "
                  f"({gpu['triton'] / floor:.2f}) | {times['compile'] / times['triton']:.2f} "
                  f"({gpu['compile'] / gpu['triton']:.2f}) | {times['eager'] / times['triton']:.1f} |")


if __name__ == "__main__":
    main()
