"""The batch shapes the module sees: a training step dict from the curriculum stream, a step dict of packed SFT
rows (with "targets" and "documents", ``lightning_motif.data.packing``), or a plain tensor."""

import torch


def step_tokens(batch: dict | torch.Tensor) -> tuple[torch.Tensor, int]:
    """(token windows of shape (sequences, seq_len + 1), sequences per forward pass) of a batch."""
    if isinstance(batch, dict):
        return batch["tokens"], int(batch["micro_batch_size"])
    return batch, batch.shape[0]


def is_packed_sft(batch: dict | torch.Tensor) -> bool:
    """Whether a step's rows carry their own targets (loss mask) and sample ids (packing)."""
    return isinstance(batch, dict) and "targets" in batch
