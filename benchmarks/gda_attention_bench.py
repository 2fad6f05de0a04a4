"""The GDA attention core on the GPU at the 12.7B head layout (8 groups x 4 signal heads + 1 noise head,
head_dim 128, values 256), bf16, forward + backward from q, k, v to the o_proj input:

- straightforward GDA: SDPA per branch, repeat_interleave of the noise output, subtract and sub-norm in fp32;
- fused GDA (the model's path): the same two SDPA calls, then the fused combine + sub-norm kernel;
- the two SDPA calls alone (the floor for any SDPA-based formulation);
- GQA with the same 32 query heads over 8 key/value heads of 128 (a softmax-attention baseline);
- the cost of measuring each head's maximum logit for QK-clip (blockwise causal q.k max).

    python -m benchmarks.gda_attention_bench [--batch 1] [--seq 4096]
"""

import argparse

import torch

from benchmarks.timing import median_ms
from components.attention.base import causal_attention, causal_max_logits
from kernels.differential_combine import differential_combine

GROUPS, RATIO, HEAD_DIM = 8, 4, 128


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=4096)
    args = parser.parse_args()
    torch.manual_seed(0)
    b, s, d = args.batch, args.seq, HEAD_DIM

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
        return differential_combine(signal, noise, lam, weight, 1e-5, 0.8, impl=impl)

    def sdpa_only():
        return causal_attention(q_signal, k1, v), causal_attention(q_noise, k2, v)

    def gqa():
        return causal_attention(q_signal, k1, gqa_v).flatten(2)

    fused, reference = gda("triton"), gda("reference")
    error = float((fused.float() - reference.float()).abs().max() / reference.float().abs().max())
    assert error < 2e-2, error
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}; batch {b}, seq {s}, bf16; "
          f"fused vs straightforward output difference {error:.1e}")

    def train(fn):
        outputs = fn()
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        torch.autograd.backward(outputs, [dout if o.shape == dout.shape else torch.ones_like(o) for o in outputs])

    causal_flops_per_head = 2 * 2 * b * s * s * d / 2  # QK^T and PV, causal half
    rows = {
        "straightforward GDA": lambda: train(lambda: gda("reference")),
        "fused GDA (model path)": lambda: train(lambda: gda("triton")),
        "its two SDPA calls alone": lambda: train(sdpa_only),
        "GQA, 32 query / 8 kv heads of 128": lambda: train(gqa),
    }
    times = {name: median_ms(fn, inner=5) for name, fn in rows.items()}
    max_logit_ms = median_ms(lambda: (causal_max_logits(q_signal, k1), causal_max_logits(q_noise, k2)), inner=5)
    sdpa = times["its two SDPA calls alone"]
    print("| attention core, forward+backward | ms | / SDPA calls alone |")
    print("|---|---|---|")
    for name, ms in times.items():
        print(f"| {name} | {ms:.2f} | {ms / sdpa:.2f} |")
    print(f"| max-logit measurement for QK-clip (signal + noise heads, forward only) | {max_logit_ms:.2f} | {max_logit_ms / sdpa:.2f} |")
    print(f"fused GDA is {times['straightforward GDA'] / times['fused GDA (model path)']:.2f}x faster than straightforward GDA; "
          f"SDPA attention FLOPs (fwd, causal): {(GROUPS * RATIO + GROUPS) * causal_flops_per_head * 1.5 / 1e12:.2f} TFLOP")


if __name__ == "__main__":
    main()
