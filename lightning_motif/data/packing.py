"""Packing SFT samples into rows of ``seq_len`` tokens (the Motif-2 report, arXiv 2511.07464, Sec. 5, packs to
16,384): samples are placed in order, whole, while they fit; the rest of a row is padding (a sample of its own
that trains nothing). Each row comes with its next-token targets (-100 where the next token is not the
assistant's, at every sample's last token, and on padding) and its sample ids, which the model turns into
document-masked attention and positions restarting per sample (``components.documents``). A sample longer than a
row is cut to ``seq_len + 1`` tokens and counted.
"""

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from kernels.linear_cross_entropy import IGNORE_INDEX
from lightning_motif.data.chat import ChatSample


@dataclass(frozen=True)
class PackedRow:
    """One row: ``tokens``, ``targets`` and ``documents`` (sample ids), each (seq_len,) int64."""

    tokens: torch.Tensor
    targets: torch.Tensor
    documents: torch.Tensor


class RowBuilder:
    """Fills one row of ``seq_len`` positions; a sample of n tokens takes n - 1 positions (its inputs, each
    predicting the next token)."""

    def __init__(self, seq_len: int, pad_id: int) -> None:
        self.seq_len, self.pad_id = seq_len, pad_id
        self.tokens, self.targets, self.documents = [], [], []
        self.samples = 0

    @property
    def free(self) -> int:
        return self.seq_len - len(self.tokens)

    def add(self, sample: ChatSample) -> None:
        targets = np.where(sample.trained[1:], sample.ids[1:], IGNORE_INDEX)
        self.tokens += sample.ids[:-1].tolist()
        self.targets += targets.tolist()
        self.documents += [self.samples] * (len(sample.ids) - 1)
        self.samples += 1

    def finish(self) -> PackedRow:
        padding = self.free
        documents = self.documents + [self.samples] * padding
        return PackedRow(torch.tensor(self.tokens + [self.pad_id] * padding),
                         torch.tensor(self.targets + [IGNORE_INDEX] * padding), torch.tensor(documents))


def pack(samples: Iterable[ChatSample], seq_len: int, pad_id: int, counts: Counter | None = None) -> Iterator[PackedRow]:
    """Rows of ``seq_len`` from ``samples`` in order (first fit into the current row, else a new row); samples of
    fewer than two tokens are skipped (``too_short``), longer than a row cut (``truncated``), both counted."""
    counts = Counter() if counts is None else counts
    row = RowBuilder(seq_len, pad_id)
    for sample in samples:
        if len(sample.ids) < 2:
            counts["too_short"] += 1
            continue
        if len(sample.ids) - 1 > seq_len:
            counts["truncated"] += 1
            sample = ChatSample(sample.ids[: seq_len + 1], sample.trained[: seq_len + 1])
        if len(sample.ids) - 1 > row.free:
            yield row.finish()
            row = RowBuilder(seq_len, pad_id)
        row.add(sample)
        counts["samples"] += 1
    if row.tokens:
        yield row.finish()
