"""Samples packed side by side in one row (supervised fine-tuning packs samples to the sequence length): each token
attends only to the earlier tokens of its own sample (document masking), and rotary positions restart at every
sample's first token, so a packed row computes what its samples would compute one by one (Motif-2 report,
arXiv 2511.07464, Sec. 5: SFT samples packed to 16,384 tokens)."""

from dataclasses import dataclass
from functools import cached_property

import torch


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
    def starts(self) -> torch.Tensor:
        """(batch, seq) bool: True at each sample's first token."""
        first = torch.ones_like(self.ids[:, :1], dtype=torch.bool)
        return torch.cat([first, self.ids[:, 1:] != self.ids[:, :-1]], dim=1)

    @cached_property
    def positions(self) -> torch.Tensor:
        """(batch, seq): each token's position within its own sample (0 at the sample's first token)."""
        index = torch.arange(self.ids.shape[1], device=self.ids.device).expand_as(self.ids)
        start = torch.where(self.starts, index, torch.zeros_like(index)).cummax(dim=1).values
        return index - start

    @cached_property
    def mask(self) -> torch.Tensor:
        """(batch, 1, seq, seq) bool, True where a query (row) may attend to a key (column): the key is at or
        before the query and in the same sample."""
        seq = self.ids.shape[1]
        causal = torch.ones(seq, seq, dtype=torch.bool, device=self.ids.device).tril()
        return (causal & (self.ids[:, :, None] == self.ids[:, None, :]))[:, None]


def sample_ids(documents: PackedDocuments | None) -> torch.Tensor | None:
    """The (batch, seq) sample ids of packed rows, or None for rows of one sequence each."""
    return None if documents is None else documents.ids
