"""What the kernels share: the implementation switch ("auto" / "triton" / "reference") and grid sizing
(persistent programs, a few per multiprocessor)."""

import os
from functools import lru_cache
from typing import Literal

import torch

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
"""Triton's CPU interpreter: every program instance costs milliseconds, so tests launch a handful."""

Implementation = Literal["auto", "triton", "reference"]
"""How a fused op runs: "triton" (the kernels), "reference" (PyTorch) or "auto" (Triton on CUDA, else PyTorch)."""


def use_triton(impl: Implementation, tensor: torch.Tensor) -> bool:
    """Whether ``impl`` runs the Triton kernels for inputs like ``tensor``."""
    return impl == "triton" or (impl == "auto" and tensor.is_cuda)


@lru_cache
def _multiprocessors(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def persistent_programs(work_items: int, device: torch.device, per_multiprocessor: int) -> int:
    """Programs to launch for ``work_items`` rows (each program loops over rows with a stride of the grid)."""
    if INTERPRETING or device.type != "cuda":
        return max(1, min(work_items, 4))
    return max(1, min(work_items, _multiprocessors(device.index or 0) * per_multiprocessor))
