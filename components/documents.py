"""Samples packed side by side in one row (supervised fine-tuning packs samples to the sequence length): each token
attends only to the earlier tokens of its own sample (document masking), and rotary positions restart at every
sample's first token, so a packed row computes what its samples would compute one by one (Motif-2 report,
arXiv 2511.07464, Sec. 5: SFT samples packed to 16,384 tokens).

The model takes a ``PackedDocuments``; its blocks see only the (batch, seq) sample-id tensor, so compiled blocks
neither guard on nor recompile for a new packing. Attention runs causally over each sample's range
(``segments``), so no seq x seq mask is ever formed and each call keeps SDPA's fused kernels.
"""

from dataclasses import dataclass
from functools import cached_property, lru_cache

import torch


def sample_starts(ids: torch.Tensor) -> torch.Tensor:
    """(batch, seq) bool: True at each sample's first token."""
    first = torch.ones_like(ids[:, :1], dtype=torch.bool)
    return torch.cat([first, ids[:, 1:] != ids[:, :-1]], dim=1)


@lru_cache(maxsize=1)
def segments(ids: torch.Tensor) -> list[list[tuple[int, int]]]:
    """Per row of sample ids, the (start, end) token range of each sample, in order. Read from the device once per
    ids tensor (a tensor hashes by identity): every attention of a forward asks for the same one."""
    seq = ids.shape[1]
    rows = []
    for starts in sample_starts(ids).cpu().tolist():
        begins = [i for i, first in enumerate(starts) if first]
        rows.append(list(zip(begins, begins[1:] + [seq])))
    return rows


@dataclass(frozen=True)
class PackedDocuments:
    """``ids`` (batch, seq): which sample each token belongs to; equal ids must be contiguous within a row (a row
    is a run of samples, padding included as a sample of its own)."""

    ids: torch.Tensor

    @classmethod
    def from_lengths(cls, lengths: list[list[int]], device: torch.device | str | None = None) -> "PackedDocuments":
        """Rows of samples of the given lengths (each row's lengths summing to the same sequence length)."""
        totals = {sum(row) for row in lengths}
        if len(totals) != 1:
            raise ValueError(f"lengths: rows sum to {sorted(totals)} tokens; every row must fill the same length")
        ids = [torch.repeat_interleave(torch.arange(len(row)), torch.tensor(row)) for row in lengths]
        return cls(torch.stack(ids).to(device))

    @cached_property
    def positions(self) -> torch.Tensor:
        """(batch, seq): each token's position within its own sample (0 at the sample's first token)."""
        index = torch.arange(self.ids.shape[1], device=self.ids.device).expand_as(self.ids)
        start = torch.where(sample_starts(self.ids), index, torch.zeros_like(index)).cummax(dim=1).values
        return index - start
