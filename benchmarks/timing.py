"""Shared timing for GPU benchmarks: the median of repeated CUDA-event timings after warm-up."""

import statistics
from collections.abc import Callable

import torch


def median_ms(fn: Callable[[], object], repeats: int = 20, warmup: int = 3, inner: int = 1) -> float:
    """Median over ``repeats`` samples of the time per call; each sample times ``inner`` back-to-back calls, so
    for sub-millisecond kernels the GPU queue stays full and Python launch overhead, which a training step
    hides the same way, does not count as kernel time."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / inner)
    return statistics.median(times)


def matmul_peak_tflops(n: int = 8192) -> float:
    """Measured bf16 dense matmul throughput (n x n x n) on this GPU, the ceiling for matmul-bound work."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    return 2 * n**3 / median_ms(lambda: a @ b) / 1e9
