"""Fused residual add + RMSNorm on the GPU at the 12.7B width: Triton against eager, torch.compile and the
memory floor measured in the same run; and a whole-model check that the fused paths agree with the reference
paths in bf16.

    python -m benchmarks.add_rmsnorm_bench [--rows 16384] [--cols 4096]
"""

import argparse

import torch

from benchmarks.polynorm_bench import copy_bandwidth
from benchmarks.timing import kernel_ms, median_ms
from components.attention import GroupedDifferentialAttentionConfig
from components.mlp import PolyNormMLPConfig
from components.model import ModelConfig, MotifForCausalLM
from kernels.add_rmsnorm import add_rmsnorm, add_rmsnorm_reference


def model_check() -> None:
    """Fused bf16 paths and reference bf16 paths, each against the reference paths in fp32 on the same weights:
    the fused error must stay within the bf16 reference's own error (twice it, plus a little)."""
    def build(kernel: str, loss: str, dtype: torch.dtype) -> MotifForCausalLM:
        torch.manual_seed(0)
        config = ModelConfig(vocab_size=32768, hidden_size=1024, num_layers=2, max_position_embeddings=2048,
                             norm_kernel=kernel, loss_kernel=loss,
                             attention=GroupedDifferentialAttentionConfig(num_noise_heads=2, signal_noise_ratio=4, head_dim=64),
                             mlp=PolyNormMLPConfig(intermediate_size=4096, kernel=kernel))
        return MotifForCausalLM(config).cuda().to(dtype)

    tokens = torch.randint(0, 32768, (2, 1025), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    runs = {}
    for label, kernel, loss, dtype in (("fused bf16", "triton", "chunked", torch.bfloat16),
                                       ("reference bf16", "reference", "reference", torch.bfloat16),
                                       ("reference fp32", "reference", "reference", torch.float32)):
        model = build(kernel, loss, dtype)
        value = model(tokens[:, :-1], targets=tokens[:, 1:]) / tokens[:, 1:].numel()
        value.backward()
        runs[label] = (value.item(), {n: p.grad.float() for n, p in model.named_parameters()})
        del model
    exact = runs["reference fp32"][1]

    def error(label: str) -> dict[str, float]:
        return {n: float((g - exact[n]).norm() / exact[n].norm().clamp_min(1e-30)) for n, g in runs[label][1].items()}

    fused, reference = error("fused bf16"), error("reference bf16")
    print("model check (2 layers, 2 x 1024 tokens), loss: " +
          ", ".join(f"{label} {value:.5f}" for label, (value, _) in runs.items()))
    print("| parameter | fused bf16 vs fp32 | reference bf16 vs fp32 |")
    print("|---|---|---|")
    for name in sorted(fused, key=lambda n: -fused[n])[:6]:
        print(f"| {name} | {fused[name]:.2e} | {reference[name]:.2e} |")
    assert all(fused[n] <= 2 * reference[n] + 1e-2 for n in fused), "fused paths worse than bf16 rounding explains"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=16384)
    parser.add_argument("--cols", type=int, default=4096)
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.rows, args.cols, device="cuda", dtype=torch.bfloat16)
    residual = torch.randn_like(x)
    weight = torch.randn(args.cols, device="cuda", dtype=torch.float32, requires_grad=True)
    dy, dh = torch.randn_like(x), torch.randn_like(x)
    y, h = add_rmsnorm(x, residual, weight, 1e-6, impl="triton")
    y_ref, h_ref = add_rmsnorm_reference(x.float(), residual.float(), weight, 1e-6)
    assert (y.float() - y_ref).abs().max() / y_ref.abs().max() < 2e-2 and torch.equal(h, x + residual)
    bandwidth = copy_bandwidth(x.numel())
    size = x.numel() * 2
    floors = {"forward": 4 * size / bandwidth, "forward+backward": (4 + 4) * size / bandwidth}  # bwd: dy, dh, h in; grad out
    compiled = torch.compile(add_rmsnorm_reference)
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}; ({args.rows}, {args.cols}) bf16; "
          f"copy bandwidth {bandwidth / 1e9:.2f} TB/s")
    print("wall-clock median per call; in parentheses the GPU kernel time per call (torch.profiler)")
    print("| pass | eager ms | torch.compile ms | Triton ms | floor ms | Triton / floor | compile / Triton |")
    print("|---|---|---|---|---|---|---|")
    for name, floor in floors.items():
        train = name != "forward"

        def run(fn):
            xs, rs = x.detach().requires_grad_(train), residual.detach().requires_grad_(train)
            with torch.set_grad_enabled(train):
                out, new_residual = fn(xs, rs)
            if train:  # gradients returned, not accumulated into .grad (no extra copies in the timing)
                torch.autograd.grad([out, new_residual], [xs, rs, weight], [dy, dh])

        paths = (("eager", lambda a, b: add_rmsnorm_reference(a, b, weight, 1e-6)),
                 ("compile", lambda a, b: compiled(a, b, weight, 1e-6)),
                 ("triton", lambda a, b: add_rmsnorm(a, b, weight, 1e-6, impl="triton")))
        times = {label: median_ms(lambda f=fn: run(f), inner=5) for label, fn in paths}
        gpu = {label: kernel_ms(lambda f=fn: run(f)) for label, fn in paths}
        print(f"| {name} | {times['eager']:.3f} | {times['compile']:.3f} ({gpu['compile']:.3f}) | "
              f"{times['triton']:.3f} ({gpu['triton']:.3f}) | {floor:.3f} | {times['triton'] / floor:.2f} "
              f"({gpu['triton'] / floor:.2f}) | {times['compile'] / times['triton']:.2f} ({gpu['compile'] / gpu['triton']:.2f}) |")
    model_check()


if __name__ == "__main__":
    main()
