"""Newton-Schulz (5 quintic steps, bf16) throughput on the Motif-2-12.7B matrix shapes, against the bf16
matmul peak measured in the same run.

    python -m benchmarks.newton_schulz_bench

Checks each result first (singular values in the quintic's band around 1, and aligned with the input's
orthogonal factor), then times one matrix (eager and torch.compile) and same-shaped matrices batched the way
MuonClip orthogonalises them (``newton_schulz_many``).
"""

import torch

from benchmarks.timing import matmul_peak_tflops, median_ms
from components.optim.newton_schulz import newton_schulz, newton_schulz_flops, newton_schulz_many

# (name, rows, cols, matrices per model): the 12.7B hidden matrices (the public checkpoint's shapes), 40 layers each.
SHAPES = [("q_proj", 5120, 4096, 40), ("k_proj / v_proj", 2048, 4096, 80), ("o_proj", 4096, 8192, 40),
          ("gate_proj / up_proj", 16384, 4096, 80), ("down_proj", 4096, 16384, 40)]


def check(update: torch.Tensor, result: torch.Tensor) -> None:
    s = torch.linalg.svdvals(result.float())
    assert 0.5 < float(s.min()) and float(s.max()) < 1.3, (float(s.min()), float(s.max()))
    # the result points like the orthogonal factor: <G, NS(G)> equals the nuclear norm up to the band
    nuclear = torch.linalg.svdvals(update.float()).sum()
    alignment = float((update.float() * result.float()).sum() / nuclear)
    assert 0.6 < alignment < 1.3, alignment


def main() -> None:
    torch.manual_seed(0)
    peak = matmul_peak_tflops()
    compiled = torch.compile(newton_schulz)
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"bf16 matmul peak (8192^3, median of 20): {peak:.0f} TFLOP/s")
    print("| matrix | shape | GFLOP | one matrix: eager ms | TFLOP/s | torch.compile ms | batched by shape: ms per matrix | TFLOP/s | / peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    total_ms = 0.0
    for name, rows, cols, count in SHAPES:
        update = torch.randn(rows, cols, device="cuda", dtype=torch.float32)
        check(update, newton_schulz(update))
        check(update, compiled(update))
        check(update, newton_schulz_many([update, update])[1])
        flops = newton_schulz_flops(rows, cols)
        eager_ms = median_ms(lambda u=update: newton_schulz(u))
        compiled_ms = median_ms(lambda u=update: compiled(u))
        batch_ms = median_ms(lambda u=update, n=count: newton_schulz_many([u] * n), repeats=5, warmup=1) / count
        total_ms += batch_ms * count
        print(f"| {name} | {rows} x {cols} | {flops / 1e9:.0f} | {eager_ms:.2f} | {flops / eager_ms / 1e9:.0f} | "
              f"{compiled_ms:.2f} | {batch_ms:.2f} | {flops / batch_ms / 1e9:.0f} | {flops / batch_ms / 1e9 / peak:.0%} |")
    all_flops = sum(newton_schulz_flops(r, c) * n for _, r, c, n in SHAPES)
    print(f"all 280 hidden matrices of the 12.7B model on one GPU (batched by shape): {total_ms:.0f} ms, "
          f"{all_flops / 1e12:.0f} TFLOP, {all_flops / total_ms / 1e9:.0f} TFLOP/s = {all_flops / total_ms / 1e9 / peak:.0%} of the measured peak")


if __name__ == "__main__":
    main()
