"""Packing SFT samples into rows of ``seq_len`` tokens (the Motif-2 report, arXiv 2511.07464, Sec. 5, packs to
16,384): samples are placed in order, whole, while they fit; the rest of a row is padding (a sample of its own
that trains nothing). Each row comes with its next-token targets (-100 where the next token is not the
assistant's, at every sample's last token, and on padding) and its sample ids, which the model turns into
document-masked attention and positions restarting per sample (``components.documents``). A sample longer than a
row is cut to ``seq_len + 1`` tokens and counted. The rule works on lengths alone (``pack_lengths``), so a
training stream can plan its rows, and find where a resumed run continues, without reading a token.
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


def pack_lengths(lengths: Iterable[int], seq_len: int, counts: Counter | None = None) -> list[list[int]]:
    """The packing rule on sample lengths (tokens): rows of sample indices, in order, a sample going into the
    current row if its inputs fit (n - 1 positions for n tokens), else starting a new row; samples of fewer than
    two tokens are skipped (``too_short``), longer ones than a row are cut to ``seq_len + 1`` (``truncated``)."""
    counts = Counter() if counts is None else counts
    rows, row, free = [], [], seq_len
    for index, length in enumerate(lengths):
        if length < 2:
            counts["too_short"] += 1
            continue
        if length - 1 > seq_len:
            counts["truncated"] += 1
        needed = min(length - 1, seq_len)
        if needed > free:
            rows.append(row)
            row, free = [], seq_len
        row.append(index)
        free -= needed
        counts["samples"] += 1
    if row:
        rows.append(row)
    return rows


def build_row(samples: list[ChatSample], seq_len: int, pad_id: int) -> PackedRow:
    """One row from the samples ``pack_lengths`` put in it (each cut to ``seq_len + 1`` tokens)."""
    row = RowBuilder(seq_len, pad_id)
    for sample in samples:
        row.add(ChatSample(sample.ids[: seq_len + 1], sample.trained[: seq_len + 1]))
    return row.finish()


def pack(samples: list[ChatSample], seq_len: int, pad_id: int, counts: Counter | None = None) -> Iterator[PackedRow]:
    """Rows of ``seq_len`` from ``samples`` in memory, by ``pack_lengths``."""
    for indices in pack_lengths([len(s.ids) for s in samples], seq_len, counts):
        yield build_row([samples[i] for i in indices], seq_len, pad_id)
