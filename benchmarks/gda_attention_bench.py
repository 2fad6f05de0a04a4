"""The GDA attention core on the GPU at the 12.7B head layout (8 groups x 4 signal heads + 1 noise head,
head_dim 128, values 256), bf16, forward + backward from q, k, v to the o_proj input:

- straightforward GDA: SDPA per branch, repeat_interleave of the noise output, subtract and sub-norm in fp32;
- fused GDA (the model's path): the same two SDPA calls, then the fused combine + sub-norm kernel;
- the two SDPA calls alone (the floor for any SDPA-based formulation);
- GQA with the same 32 query heads over 8 key/value heads of 128 (a softmax-attention baseline);
- the cost of measuring each head's maximum logit for QK-clip: the Triton kernel (the model's path on GPU) and
  the blockwise PyTorch reference;
- the one-pass GDA core (``kernels.gda_attention``, ``fused_core: true``): both branches of a group per pass over
  its keys and values, the max logits from the same scores; alone and followed by the fused combine; checked
  against the SDPA path. Its target: at most 1.15x of GQA's time x the FLOP ratio of the two cores.

    python -m benchmarks.gda_attention_bench [--batch 1] [--seq 4096 16384] [--sweep]

``--sweep`` autotunes the one-pass kernels over a wide grid of tiles (query tokens, keys, warps, pipeline stages)
instead of the shipped candidates and prints every tile's time: how ``FORWARD_TILES`` and the backward lists in
``kernels.gda_attention`` were chosen, and how to choose them again for another GPU.
"""

import argparse

import torch

from benchmarks.timing import median_ms
from components.attention.base import causal_attention
from kernels.causal_max_logits import causal_max_logits
from kernels.differential_combine import differential_combine
from kernels import gda_attention as one_pass_kernels
from kernels.gda_attention import gda_attention

GROUPS, RATIO, HEAD_DIM = 8, 4, 128
FLOP_RATIO = (GROUPS * (RATIO + 1) * 3) / (GROUPS * RATIO * 2)
"""GDA core / GQA core FLOPs: 40 heads of q.k (d) and p.v (2d) against 32 heads of d and d."""
SWEEP_TILES = {
    "_gda_forward_kernel": [(m, n, w, s) for m in (16, 32) for n, s in ((32, 2), (32, 3), (32, 4), (64, 1), (64, 2),
                                                                         (128, 1)) for w in (4, 8)],
    "_gda_backward_kv_kernel": [(m, n, w, s) for m, n, s in ((16, 32, 1), (16, 32, 2), (16, 64, 1), (16, 64, 2),
                                                             (16, 128, 1), (32, 32, 1), (32, 64, 1), (32, 32, 2))
                                for w in (4, 8)],
    "_gda_backward_q_kernel": [(m, n, w, s) for m in (16, 32) for n, s in ((32, 2), (32, 3), (64, 1), (64, 2),
                                                                            (128, 1)) for w in (4, 8)],
}
"""Tiles the sweep tries (query tokens, keys, warps, stages); shared memory rules out deeper pipelines of the
larger tiles (each stage of keys and 2d-wide values costs 1 KiB per key in bf16)."""


def sweep_tiles() -> None:
    for name, tiles in SWEEP_TILES.items():
        getattr(one_pass_kernels, name).configs = one_pass_kernels._tile_configs(tiles)


def print_sweep() -> None:
    for name in SWEEP_TILES:
        tuner = getattr(one_pass_kernels, name)
        timings = sorted(((t[0] if isinstance(t, list) else t, c) for c, t in getattr(tuner, "configs_timings", {}).items()),
                         key=lambda pair: pair[0])
        print(f"{name}: best {tuner.best_config}")
        for ms, config in timings[:8]:
            print(f"  {ms:.3f} ms  {config}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, nargs="+", default=[4096])
    parser.add_argument("--sweep", action="store_true")
    args = parser.parse_args()
    if args.sweep:
        sweep_tiles()
    for seq in args.seq:
        run(args.batch, seq)
    if args.sweep:
        print_sweep()


def run(b: int, s: int) -> None:
    torch.manual_seed(0)
    d = HEAD_DIM

    def leaf(*shape):
        return torch.randn(*shape, device="cuda", dtype=torch.bfloat16).requires_grad_()

    q_signal, q_noise = leaf(b, s, GROUPS * RATIO, d), leaf(b, s, GROUPS, d)
    k1, k2, v = leaf(b, s, GROUPS, d), leaf(b, s, GROUPS, d), leaf(b, s, GROUPS, 2 * d)
    lam = torch.tensor(0.3, device="cuda", requires_grad=True)
    weight = torch.ones(2 * d, device="cuda", requires_grad=True)
    gqa_v = leaf(b, s, GROUPS, d)
    dout = torch.randn(b, s, GROUPS * RATIO * 2 * d, device="cuda", dtype=torch.bfloat16)

    def gda(impl):
        signal = causal_attention(q_signal, k1, v)
        noise = causal_attention(q_noise, k2, v)
        return differential_combine(signal, noise, lam, weight, 1e-5, impl=impl)

    q_grouped = torch.cat([q_signal.detach().view(b, s, GROUPS, RATIO, d), q_noise.detach().view(b, s, GROUPS, 1, d)],
                          dim=3).requires_grad_()
    k_pairs = torch.stack([k1.detach(), k2.detach()], dim=3).view(b, s, 2 * GROUPS, d).requires_grad_()

    def one_pass_core():
        return gda_attention(q_grouped, k_pairs, v, track_max_logits=True, impl="triton")[:2]

    def one_pass():
        return differential_combine(*one_pass_core(), lam, weight, 1e-5, impl="triton")

    def sdpa_only():
        return causal_attention(q_signal, k1, v), causal_attention(q_noise, k2, v)

    def gqa():
        return causal_attention(q_signal, k1, gqa_v).flatten(2)

    def one_pass_gradient_errors() -> dict[str, float]:
        """Input gradients of the one-pass core + combine against the SDPA path's, both in bf16 (max |difference|
        over max |gradient|; bf16 rounding of the outputs and gradients alone reaches ~1e-2)."""
        got = torch.autograd.grad((one_pass() * dout).sum(), (q_grouped, k_pairs, v))
        want_q_signal, want_q_noise, want_k1, want_k2, want_v = torch.autograd.grad(
            (gda("triton") * dout).sum(), (q_signal, q_noise, k1, k2, v))
        want = (torch.cat([want_q_signal.view(b, s, GROUPS, RATIO, d), want_q_noise.view(b, s, GROUPS, 1, d)], 3),
                torch.stack([want_k1, want_k2], 3).view(b, s, 2 * GROUPS, d), want_v)
        errors = {name: float((g.float() - w.float()).abs().max() / w.float().abs().max())
                  for name, g, w in zip("qkv", got, want)}
        assert max(errors.values()) < 3e-2, errors
        return errors

    fused, reference = gda("triton"), gda("reference")
    error = float((fused.float() - reference.float()).abs().max() / reference.float().abs().max())
    assert error < 2e-2, error
    one_pass_error = float((one_pass().float() - reference.float()).abs().max() / reference.float().abs().max())
    assert one_pass_error < 2e-2, one_pass_error
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}; batch {b}, seq {s}, bf16; "
          f"fused vs straightforward output difference {error:.1e}, one-pass core {one_pass_error:.1e}")

    def train(fn):
        outputs = fn()
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        torch.autograd.backward(outputs, [dout if o.shape == dout.shape else torch.ones_like(o) for o in outputs])

    def max_logits(impl):
        return torch.cat([causal_max_logits(q_signal, k1, impl=impl), causal_max_logits(q_noise, k2, impl=impl)])

    causal_flops_per_head = 2 * 2 * b * s * s * d / 2  # QK^T and PV, causal half
    rows = {
        "straightforward GDA": lambda: train(lambda: gda("reference")),
        "fused GDA (model path)": lambda: train(lambda: gda("triton")),
        "its two SDPA calls alone": lambda: train(sdpa_only),
        "GQA, 32 query / 8 kv heads of 128": lambda: train(gqa),
    }
    rows["fused GDA + each head's max logit (QK-clip on)"] = lambda: (max_logits("triton"), train(lambda: gda("triton")))
    rows["one-pass GDA core + combine, max logits included"] = lambda: train(one_pass)
    rows["one-pass GDA core alone, max logits included"] = lambda: train(one_pass_core)
    times = {name: median_ms(fn, inner=5) for name, fn in rows.items()}

    exact = torch.cat([causal_max_logits(q_signal.float(), k1.float(), impl="reference"),
                       causal_max_logits(q_noise.float(), k2.float(), impl="reference")])
    max_logit_error = float((max_logits("triton") - exact).abs().max() / exact.abs().max())
    assert max_logit_error < 1e-3, max_logit_error  # same bf16 inputs, fp32 accumulation in both
    one_pass_maxima = gda_attention(q_grouped, k_pairs, v, track_max_logits=True, impl="triton")[2].view(GROUPS, -1)
    one_pass_maxima = torch.cat([one_pass_maxima[:, :RATIO].flatten(), one_pass_maxima[:, RATIO]])
    one_pass_max_error = float((one_pass_maxima - exact).abs().max() / exact.abs().max())
    assert one_pass_max_error < 1e-3, one_pass_max_error
    gradient_errors = one_pass_gradient_errors()
    print(f"one-pass core vs the SDPA path, relative max difference: max logits {one_pass_max_error:.1e}, "
          + ", ".join(f"d{name} {error:.1e}" for name, error in gradient_errors.items()))
    max_logit_ms = {impl: median_ms(lambda i=impl: max_logits(i), inner=5) for impl in ("triton", "reference")}
    sdpa = times["its two SDPA calls alone"]
    print("| attention core, forward+backward | ms | / SDPA calls alone |")
    print("|---|---|---|")
    for name, ms in times.items():
        print(f"| {name} | {ms:.2f} | {ms / sdpa:.2f} |")
    for impl, ms in max_logit_ms.items():
        print(f"| max-logit measurement for QK-clip, {impl} (signal + noise heads) | {ms:.3f} | {ms / sdpa:.3f} |")
    print(f"max-logit kernel vs fp32 reference: relative difference {max_logit_error:.1e}; "
          f"{(GROUPS * RATIO + GROUPS) * b * s * s * d / max_logit_ms['triton'] / 1e9:.0f} TFLOP/s (causal q.k^T)")
    target = times["GQA, 32 query / 8 kv heads of 128"] * FLOP_RATIO
    sdpa_path = times["fused GDA + each head's max logit (QK-clip on)"]
    print(f"one-pass core / (GQA x FLOP ratio {FLOP_RATIO:.3f}): "
          f"{times['one-pass GDA core alone, max logits included'] / target:.2f} (target <= 1.15); SDPA path with "
          f"max logits / (GQA x FLOP ratio): {sdpa_path / target:.2f}")
    forward_flops = b * s * s / 2 * 2 * HEAD_DIM * 3 * GROUPS * (RATIO + 1)  # causal q.k (d) and p.v (2d)
    print(f"one-pass core: {3.5 * forward_flops / times['one-pass GDA core alone, max logits included'] / 1e9:.0f} "
          f"TFLOP/s, GQA: {3.5 * forward_flops / FLOP_RATIO / times['GQA, 32 query / 8 kv heads of 128'] / 1e9:.0f} "
          "(forward + backward counted as 3.5 x the forward's causal FLOPs)")
    print(f"fused GDA is {times['straightforward GDA'] / times['fused GDA (model path)']:.2f}x faster than straightforward GDA; "
          f"SDPA attention FLOPs (fwd, causal): {(GROUPS * RATIO + GROUPS) * causal_flops_per_head * 1.5 / 1e12:.2f} TFLOP")


if __name__ == "__main__":
    main()
