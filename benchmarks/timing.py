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


def kernel_ms(fn: Callable[[], object], steps: int = 10, warmup: int = 3) -> float:
    """GPU time per call summed over the kernels it launches (torch.profiler), without the gaps between them:
    what a call costs inside a training step, where the CPU runs ahead and launch overhead stays hidden."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as trace:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    return sum(event.self_device_time_total for event in trace.key_averages()) / steps / 1000
