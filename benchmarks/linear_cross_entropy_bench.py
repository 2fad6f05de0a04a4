"""Fused (chunked) linear + cross-entropy at 16K tokens x the 12.7B vocabulary (219,520), bf16, on the GPU:
peak memory and time of forward+backward against the unfused path (logits, fp32 upcast, cross-entropy).

    python -m benchmarks.linear_cross_entropy_bench [--tokens 16384] [--vocab 219520] [--hidden 4096]

Checks loss and gradients against each other before measuring.
"""

import argparse

import torch

from benchmarks.timing import median_ms
from kernels.linear_cross_entropy import linear_cross_entropy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--vocab", type=int, default=219520)
    parser.add_argument("--hidden", type=int, default=4096)
    args = parser.parse_args()
    torch.manual_seed(0)
    hidden = (torch.randn(args.tokens, args.hidden, device="cuda") * 0.5).bfloat16().requires_grad_()
    weight = (torch.randn(args.vocab, args.hidden, device="cuda") * 0.02).bfloat16().requires_grad_()
    targets = torch.randint(0, args.vocab, (args.tokens,), device="cuda")
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}; {args.tokens} tokens x {args.hidden} "
          f"-> vocab {args.vocab}, bf16")

    def step(impl: str):
        hidden.grad = weight.grad = None
        loss = linear_cross_entropy(hidden, weight, targets, impl=impl)
        (loss / args.tokens).backward()
        return loss

    results = {}
    for impl in ("reference", "chunked"):
        loss = step(impl)
        results[impl] = (loss.item(), hidden.grad.float().clone(), weight.grad.float().clone())
    (ref_loss, ref_dh, ref_dw), (loss, dh, dw) = results["reference"], results["chunked"]
    assert abs(loss - ref_loss) / ref_loss < 1e-3, (loss, ref_loss)
    for a, b in ((dh, ref_dh), (dw, ref_dw)):
        assert (a - b).abs().max() / b.abs().max() < 2e-2  # bf16 gradients, summed in another order
    del results, ref_dh, ref_dw, dh, dw
    print("| path | forward+backward ms (median of 10) | peak memory above inputs GiB |")
    print("|---|---|---|")
    measured = {}
    for impl in ("reference", "chunked"):
        hidden.grad = weight.grad = None
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step(impl)
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**30
        ms = median_ms(lambda i=impl: step(i), repeats=10, warmup=2)
        measured[impl] = (ms, peak)
        print(f"| {impl} | {ms:.1f} | {peak:.2f} |")
    (ref_ms, ref_peak), (ms, peak) = measured["reference"], measured["chunked"]
    print(f"chunked / unfused: time {ms / ref_ms:.2f}x, peak memory {peak / ref_peak:.0%} "
          f"(the gradients themselves, {(hidden.numel() + weight.numel()) * 2 / 2**30:.2f} GiB, are in both)")


if __name__ == "__main__":
    main()
