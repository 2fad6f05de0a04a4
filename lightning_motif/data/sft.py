"""Supervised fine-tuning data: the conversations of a prepared dataset's chat domains (``motif prepare`` with
``format: chat``), shuffled per epoch, packed into rows (``lightning_motif.data.packing``) and grouped into
optimizer steps. The Motif-2 report (arXiv 2511.07464, Sec. 5) packs its SFT samples to 16,384 tokens.

The stream is a pure function of (seed, seq_len, rows_per_step, the stored lengths): epoch e visits every
conversation once in a permutation seeded by (seed, e); rows are planned from the lengths alone, so step k's
rows are known without reading a token and a resumed run continues at exactly the step after the last one
trained. An epoch's rows that do not fill a last step are dropped (at most rows_per_step - 1 rows an epoch).
"""

import os
from functools import lru_cache

import lightning as L
import numpy as np
import torch
from litdata import StreamingDataset
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from components.config_error import ConfigError, require
from lightning_motif.data.chat import ChatSample, decode_conversation
from lightning_motif.data.packing import PackedRow, build_row, pack_lengths
from lightning_motif.data.token_dataset import LENGTHS, Manifest, verify_shards


class SFTPlan:
    """Which conversations (domain index, sample index) fill each row of each step."""

    def __init__(self, lengths: list[np.ndarray], seq_len: int, rows_per_step: int, seed: int) -> None:
        self.seq_len, self.rows_per_step, self.seed = seq_len, rows_per_step, seed
        self.samples = np.concatenate([np.stack([np.full(len(x), d), np.arange(len(x))], 1)
                                       for d, x in enumerate(lengths)]) if lengths else np.zeros((0, 2), np.int64)
        self.flat_lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)

    @lru_cache(maxsize=2)
    def epoch_rows(self, epoch: int) -> list[np.ndarray]:
        """Rows of epoch ``epoch``: arrays of (domain, sample) pairs."""
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.samples))
        return [self.samples[order[row]] for row in pack_lengths(self.flat_lengths[order].tolist(), self.seq_len)]

    def steps(self, start: int):
        """(step, epoch, rows) from global step ``start`` on, forever."""
        step, epoch = 0, 0
        while True:
            rows = self.epoch_rows(epoch)
            count = len(rows) // self.rows_per_step
            if count == 0:
                raise ConfigError("SFTDataModule", "rows_per_step", self.rows_per_step,
                                  f"an epoch packs into only {len(rows)} rows: lower rows_per_step or seq_len")
            for k in range(max(0, start - step), count):
                yield step + k, epoch, rows[k * self.rows_per_step:(k + 1) * self.rows_per_step]
            step += count
            epoch += 1


class SFTDataset(IterableDataset):
    """Yields one item per optimizer step for this rank, from step ``start_step`` on::

        {"tokens": int64 (rows, seq_len + 1), "targets": (rows, seq_len), "documents": (rows, seq_len),
         "micro_batch_size": int, "sft": {"step": int, "epoch": int}}

    ``tokens[:, :-1]`` are the inputs (the last column is padding, so the curriculum's window shape holds);
    the rank holds the ``rank``-th contiguous slice of the step's rows; worker k of K builds every K-th step.
    """

    def __init__(self, domain_dirs: list[str], plan: SFTPlan, rank: int, world_size: int, start_step: int,
                 micro_batch_rows: int, pad_id: int) -> None:
        super().__init__()
        self.domain_dirs, self.plan = domain_dirs, plan
        self.rank, self.world_size, self.start_step = rank, world_size, start_step
        self.micro_batch_rows, self.pad_id = micro_batch_rows, pad_id

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        stores = [StreamingDataset(d) for d in self.domain_dirs]
        per_rank = self.plan.rows_per_step // self.world_size
        for step, epoch, rows in self.plan.steps(self.start_step):
            if (step - self.start_step) % workers != worker:
                continue
            mine = rows[self.rank * per_rank:(self.rank + 1) * per_rank]
            built = [build_row([ChatSample(*decode_conversation(np.asarray(stores[d][int(i)]))) for d, i in row],
                               self.plan.seq_len, self.pad_id) for row in mine]
            yield {**stack_rows(built, self.pad_id), "micro_batch_size": self.micro_batch_rows,
                   "sft": {"step": step, "epoch": epoch}}


def stack_rows(rows: list[PackedRow], pad_id: int) -> dict[str, torch.Tensor]:
    """Rows as one batch: windows (inputs plus a padding column), targets and sample ids."""
    inputs = torch.stack([r.tokens for r in rows])
    return {"tokens": torch.cat([inputs, torch.full_like(inputs[:, :1], pad_id)], dim=1),
            "targets": torch.stack([r.targets for r in rows]), "documents": torch.stack([r.documents for r in rows])}


class SFTEvalDataset(IterableDataset):
    """A held-out split's conversations in stored order, packed, in batches of ``rows`` rows. Every rank scores
    all of them (a held-out split is small, and no rank is ever left without a batch to reduce)."""

    def __init__(self, domain_dir: str, seq_len: int, rows: int, pad_id: int) -> None:
        super().__init__()
        self.domain_dir, self.seq_len, self.rows, self.pad_id = domain_dir, seq_len, rows, pad_id

    def __iter__(self):
        store = StreamingDataset(self.domain_dir)
        lengths = np.load(os.path.join(self.domain_dir, LENGTHS))
        planned = pack_lengths(lengths.tolist(), self.seq_len)
        for start in range(0, len(planned), self.rows):
            built = [build_row([ChatSample(*decode_conversation(np.asarray(store[int(i)]))) for i in row],
                               self.seq_len, self.pad_id) for row in planned[start:start + self.rows]]
            yield stack_rows(built, self.pad_id)


class SFTDataModule(L.LightningDataModule):
    """Packed conversations for supervised fine-tuning, from the chat domains of a prepared dataset.

    Each optimizer step trains on ``rows_per_step`` rows of ``seq_len`` tokens (split over the ranks), in
    forward passes of ``micro_batch_rows`` rows; the loss counts the assistant's tokens only and attention stays
    within each conversation (``MotifLM``). Validation: each domain's val split packed the same way, in stored
    order. Like the curriculum, the data position (``next_step``) is saved in checkpoints, so a resume continues
    the stream exactly.

    Args:
        data_dir: A dataset written by ``motif prepare`` with chat domains.
        seq_len: Tokens per row (the report packs to 16,384).
        rows_per_step: Rows per optimizer step, over all ranks (a multiple of the number of ranks).
        micro_batch_rows: Rows per forward pass.
        domains: The chat domains to train on (default: all of them).
        val_batch_rows: Rows per validation batch.
        num_workers: Loader processes (0: load in the training process).
        seed: Seed of the per-epoch order of the conversations.
        pad_id: Token id of the padding at the end of rows (it is never trained on or attended to by a sample).
    """

    def __init__(self, data_dir: str, seq_len: int = 16384, rows_per_step: int = 8, micro_batch_rows: int = 1,
                 domains: list[str] | None = None, val_batch_rows: int = 2, num_workers: int = 0, seed: int = 42,
                 pad_id: int = 0) -> None:
        super().__init__()
        self.data_dir, self.seq_len, self.rows_per_step = data_dir, seq_len, rows_per_step
        self.micro_batch_rows, self.domains, self.val_batch_rows = micro_batch_rows, domains, val_batch_rows
        self.num_workers, self.seed, self.pad_id = num_workers, seed, pad_id
        for name, value in (("seq_len", seq_len), ("rows_per_step", rows_per_step),
                            ("micro_batch_rows", micro_batch_rows), ("val_batch_rows", val_batch_rows)):
            require(value >= 1, self, name, "use a positive number")
        require(num_workers >= 0, self, "num_workers", "use 0 (load in the main process) or more workers")
        require(pad_id >= 0, self, "pad_id", "use a token id of the vocabulary, e.g. 0")
        self._manifest: Manifest | None = None
        self.next_step = 0

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            self._manifest = Manifest.load(self.data_dir)
        return self._manifest

    @property
    def train_domains(self) -> list[str]:
        chat = self.manifest.domains_of("chat")
        if not chat:
            raise ConfigError("SFTDataModule", "data_dir", self.data_dir, "the dataset has no chat domains: prepare "
                              "conversations with format: chat (motif prepare)")
        chosen = self.domains or chat
        unknown = sorted(set(chosen) - set(chat))
        if unknown:
            raise ConfigError("SFTDataModule", "domains", unknown, f"not chat domains of the dataset; it has {chat}")
        return chosen

    @property
    def val_domains(self) -> list[str]:
        return [d for d in self.manifest.split_domains("val") if d in self.train_domains]

    def check_fits(self, model: L.LightningModule) -> None:
        """Let ``model`` refuse this data (row length, tokenizer size) before anything starts."""
        check = getattr(model, "check_data_fits", None)
        if check is not None:
            check("seq_len", self.seq_len, self.manifest.vocab_size)
        require(self.pad_id < self.manifest.vocab_size, self, "pad_id",
                f"outside the tokenizer's {self.manifest.vocab_size} tokens: use one of its ids")
        require(bool(self.train_domains), self, "domains", "name at least one chat domain")

    @staticmethod
    def check_max_steps(max_steps: int) -> None:
        if max_steps < 1:
            raise ConfigError("trainer", "max_steps", max_steps, "set the run's number of optimizer steps (1 or more)")

    def setup(self, stage: str) -> None:
        if self.trainer is not None:
            self.check_fits(self.trainer.lightning_module)
            world_size = self.trainer.world_size
            require(self.rows_per_step % world_size == 0, self, "rows_per_step",
                    f"does not split over {world_size} ranks: use a multiple of {world_size}")
        for domain in self.train_domains if stage == "fit" else []:
            verify_shards(self._dir("train", domain))

    def _dir(self, split: str, domain: str) -> str:
        return os.path.join(self.data_dir, split, domain)

    def plan(self) -> SFTPlan:
        lengths = [np.load(os.path.join(self._dir("train", d), LENGTHS)) for d in self.train_domains]
        return SFTPlan(lengths, self.seq_len, self.rows_per_step, self.seed)

    def train_dataloader(self) -> DataLoader:
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        dataset = SFTDataset([self._dir("train", d) for d in self.train_domains], self.plan(), rank, world_size,
                             self.next_step, self.micro_batch_rows, self.pad_id)
        return DataLoader(dataset, batch_size=None, num_workers=self.num_workers)

    def val_dataloader(self) -> list[DataLoader]:
        # in the training process: loader workers would each replay the whole split
        return [DataLoader(SFTEvalDataset(self._dir("val", d), self.seq_len, self.val_batch_rows, self.pad_id),
                           batch_size=None) for d in self.val_domains]

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        """Advance the data position past each training batch as it reaches the training step."""
        if isinstance(batch, dict) and "sft" in batch:
            self.next_step = batch["sft"]["step"] + 1
        return batch

    def state_dict(self) -> dict:
        return {"seed": self.seed, "seq_len": self.seq_len, "rows_per_step": self.rows_per_step,
                "next_step": self.next_step}

    def load_state_dict(self, state: dict) -> None:
        self.next_step = state.get("next_step", 0)
