"""The two batch shapes the module sees: a training step dict from the curriculum stream, or a plain tensor."""

import torch


def step_tokens(batch: dict | torch.Tensor) -> tuple[torch.Tensor, int]:
    """(token windows of shape (sequences, seq_len + 1), sequences per forward pass) of a batch."""
    if isinstance(batch, dict):
        return batch["tokens"], int(batch["micro_batch_size"])
    return batch, batch.shape[0]
