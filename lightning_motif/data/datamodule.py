"""DataModules: the curriculum training stream over prepared token shards, and the embedded default corpus."""

import hashlib
import os
import warnings
from itertools import islice
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from components.config_error import ConfigError, require
from lightning_motif.data.curriculum import CurriculumPlan, CurriculumSchedule
from lightning_motif.data.curriculum_dataset import CurriculumDataset
from lightning_motif.data.default_corpus import build_default_corpus
from lightning_motif.data.token_dataset import MANIFEST, TOKENIZER, Manifest, TokenWindows, count_pages, verify_shards


class CurriculumDataModule(L.LightningDataModule):
    """Trains on a prepared dataset (``motif prepare``) through a per-step curriculum; validates and tests with
    one loader per domain, windows of ``val_seq_len`` tokens.

    The training stream is a pure function of (seed, schedule, step): ``train_dataloader`` starts it at
    ``next_step``, the data position: one past the stream step of the last batch that reached training. It is
    its own counter, saved in the checkpoint (``state_dict``), because it runs ahead of ``trainer.global_step``
    whenever an optimizer step is skipped as non-finite. So a resume reads exactly the samples and mixture
    weights an uninterrupted run would, whatever the number of ranks and loader workers (and however many
    batches the loader had prefetched when the checkpoint was written).

    Args:
        data_dir: A dataset written by ``motif prepare`` (manifest.json, tokenizer.json, <split>/<domain>/).
        schedule: The curriculum: mixture, sequence length and tokens per step, by tokens trained on.
        micro_batch_tokens: Tokens of one forward pass; a step's batch is split into micro-batches of this size.
        val_seq_len: Validation/test window length (default: the schedule's first sequence length).
        val_batch_size: Validation/test sequences per batch.
        num_workers: Loader processes (0: load in the training process).
        seed: Seed of the sample stream (domains drawn per sample, page order per epoch).
        start_step: The optimizer step whose samples a new run starts from (a run resumed from a checkpoint
            continues from its own): training from another run's weights alone (``motif grow``, then
            ``init_weights_from``) reads the samples that run did not, with the same seed.
    """

    def __init__(
        self,
        data_dir: str,
        schedule: CurriculumSchedule,
        micro_batch_tokens: int = 16384,
        val_seq_len: int | None = None,
        val_batch_size: int = 8,
        num_workers: int = 0,
        seed: int = 42,
        start_step: int = 0,
    ) -> None:
        super().__init__()
        self.data_dir = data_dir
        self.schedule = schedule
        self.micro_batch_tokens = micro_batch_tokens
        self.val_seq_len = val_seq_len or schedule.seq_len[0].value
        self.val_batch_size = val_batch_size
        self.num_workers = num_workers
        self.seed = seed
        require(micro_batch_tokens >= 1, self, "micro_batch_tokens", "use the tokens one forward pass may hold, e.g. 16384")
        require(self.val_seq_len >= 1, self, "val_seq_len", "use a positive sequence length")
        require(val_batch_size >= 1, self, "val_batch_size", "use a positive batch size")
        require(num_workers >= 0, self, "num_workers", "use 0 (load in the main process) or more workers")
        require(start_step >= 0, self, "start_step", "use 0 (the stream's beginning) or a later optimizer step")
        self._manifest: Manifest | None = None
        self.start_step = self.next_step = start_step

    @property
    def seq_len(self) -> int:
        """The longest sequence the model will see (training or validation)."""
        return max(self.schedule.max_seq_len, self.val_seq_len)

    @property
    def _seq_len_field(self) -> str:
        return "schedule.seq_len" if self.schedule.max_seq_len >= self.val_seq_len else "val_seq_len"

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            self._manifest = Manifest.load(Path(self.data_dir))
        return self._manifest

    @property
    def vocab_size(self) -> int:
        return self.manifest.vocab_size

    @property
    def val_domains(self) -> list[str]:
        return self.manifest.split_domains("val")

    def _prepared(self) -> bool:
        """Whether the dataset exists; a ConfigError naming data_dir when it does not (this module makes none)."""
        return self.manifest is not None

    def check_fits(self, model: L.LightningModule) -> None:
        """Let ``model`` refuse this data (sequence length, tokenizer size) with a ConfigError. The ``motif`` CLI
        calls this before the trainer starts; ``setup`` calls it again once ``prepare_data`` has made the data."""
        check = getattr(model, "check_data_fits", None)
        prepared = self._prepared()
        if check is not None:
            check(self._seq_len_field, self.seq_len, self.vocab_size if prepared else None)
        if prepared:
            self._check_domains()

    def _check_domains(self) -> None:
        unknown = sorted(set(self.schedule.domains) - set(self.manifest.domains))
        if unknown:
            raise ConfigError("CurriculumSchedule", "mixture", unknown,
                              f"unknown domains; the dataset at {self.data_dir} has {self.manifest.domains}")

    @staticmethod
    def check_max_steps(max_steps: int) -> None:
        """The curriculum stream never ends: a run needs its optimizer steps (``trainer.max_steps``)."""
        if max_steps < 1:
            raise ConfigError("trainer", "max_steps", max_steps,
                              "the curriculum stream has no end: set the run's number of optimizer steps (1 or more)")

    def setup(self, stage: str) -> None:
        if self.trainer is not None:
            self.check_fits(self.trainer.lightning_module)
        self._check_domains()
        if self.trainer is not None and stage == "fit":
            self.check_max_steps(self.trainer.max_steps)
            self._check_batches_split(self.trainer.world_size, self.trainer.max_steps)
            for domain in self.schedule.domains:
                verify_shards(self._domain_dir("train", domain))
        for domain in self.val_domains if stage in ("fit", "validate") else []:
            verify_shards(self._domain_dir("val", domain))

    def _check_batches_split(self, world_size: int, max_steps: int) -> None:
        steps = islice(self.schedule.layout(), self.start_step, self.start_step + max_steps)
        for step, (seq_len, sequences, _, _) in enumerate(steps, start=self.start_step):
            if sequences % world_size:
                raise ConfigError("CurriculumSchedule", "batch_multiple", self.schedule.batch_multiple,
                                  f"step {step} has {sequences} sequences of {seq_len} tokens, which do not split "
                                  f"over {world_size} ranks: set batch_multiple to a multiple of {world_size}")

    def _domain_dir(self, split: str, domain: str) -> str:
        return os.path.join(self.data_dir, split, domain)

    def plan(self) -> CurriculumPlan:
        """The sample plan over every page of every domain: the same on every rank (litdata's own length would
        count only this rank's share of the pages once torch.distributed is up)."""
        page_tokens = self.schedule.max_seq_len + 1
        pages = {d: count_pages(self._domain_dir("train", d), page_tokens) for d in self.schedule.domains}
        return CurriculumPlan(self.schedule, pages, self.seed)

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        dataset = CurriculumDataset({d: self._domain_dir("train", d) for d in self.schedule.domains}, self.plan(),
                                    rank, world_size, self.next_step, self.micro_batch_tokens)
        return DataLoader(dataset, batch_size=None, num_workers=self.num_workers)

    def _eval_loaders(self, split: str) -> list[DataLoader]:
        domains = self.manifest.split_domains(split)
        if not domains:
            raise ConfigError("data", "data_dir", self.data_dir,
                              f"this dataset has no {split} split: prepare it with {split}_fraction > 0 or {split}_paths")
        return [DataLoader(TokenWindows(self._domain_dir(split, d), self.val_seq_len + 1), batch_size=self.val_batch_size,
                           num_workers=self.num_workers) for d in domains]

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("test")

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        """Advance the data position past each training batch as it reaches the training step (batches the
        loader prefetched beyond it do not count)."""
        if isinstance(batch, dict) and "curriculum" in batch:
            self.next_step = batch["curriculum"]["step"] + 1
        return batch

    def state_dict(self) -> dict:
        return {"seed": self.seed, "schedule": self.schedule.fingerprint(), "next_step": self.next_step}

    def load_state_dict(self, state: dict) -> None:
        self.next_step = state.get("next_step", 0)
        if {k: state.get(k) for k in ("seed", "schedule")} != {"seed": self.seed, "schedule": self.schedule.fingerprint()}:
            warnings.warn("the data seed or curriculum schedule differs from the checkpoint's: the resumed run reads "
                          "a different sample stream than the interrupted one", stacklevel=2)


class EmbeddedCorpusDataModule(CurriculumDataModule):
    """The offline default: code, prose and math made from the Python install on first use, then cached.

    ``cache_dir`` defaults to $MOTIF_CACHE or ~/.cache/lightning-motif; the corpus folder name records the
    tokenizer and corpus sizes, so different settings never overwrite each other.

    Args:
        schedule: The curriculum: mixture, sequence length and tokens per step, by tokens trained on.
        micro_batch_tokens: Tokens of one forward pass; a step's batch is split into micro-batches of this size.
        val_seq_len: Validation/test window length (default: the schedule's first sequence length).
        val_batch_size: Validation/test sequences per batch.
        num_workers: Loader processes (0: load in the training process).
        seed: Seed of the sample stream (domains drawn per sample, page order per epoch).
        start_step: The optimizer step whose samples a new run starts from (see CurriculumDataModule).
        tokenizer_vocab_size: Size of the byte-level BPE trained on the corpus (when ``tokenizer`` is unset).
        bytes_per_domain: Bytes of text collected for each of code, prose and math.
        cache_dir: Where the built corpus is kept (default: $MOTIF_CACHE or ~/.cache/lightning-motif).
        tokenizer: A Hugging Face tokenizer folder (or tokenizer.json) to tokenize the corpus with instead, e.g.
            the released Motif-2 tokenizer for a model imported with ``motif convert import``.
    """

    def __init__(
        self,
        schedule: CurriculumSchedule,
        micro_batch_tokens: int = 4096,
        val_seq_len: int | None = None,
        val_batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 42,
        start_step: int = 0,
        tokenizer_vocab_size: int = 4096,
        bytes_per_domain: int = 3_000_000,
        cache_dir: str | None = None,
        tokenizer: str | None = None,
    ) -> None:
        cache = Path(cache_dir or os.environ.get("MOTIF_CACHE") or Path.home() / ".cache" / "lightning-motif")
        self.tokenizer = tokenizer
        super().__init__(str(cache / f"embedded-corpus-{self._tokenizer_name(tokenizer_vocab_size)}-{bytes_per_domain}"),
                         schedule, micro_batch_tokens, val_seq_len, val_batch_size, num_workers, seed, start_step)
        self.tokenizer_vocab_size = tokenizer_vocab_size
        self.bytes_per_domain = bytes_per_domain
        require(tokenizer_vocab_size >= 512, self, "tokenizer_vocab_size", "train the BPE tokenizer with at least 512 tokens")
        require(bytes_per_domain >= 100_000, self, "bytes_per_domain", "use at least 100_000 bytes per domain")

    def _tokenizer_name(self, vocab_size: int) -> str:
        """The part of the corpus folder's name that says how it was tokenized."""
        if self.tokenizer is None:
            return f"v{vocab_size}"
        path = Path(self.tokenizer).expanduser()
        file = path / TOKENIZER if path.is_dir() else path
        if not file.is_file():
            raise ConfigError(type(self).__name__, "tokenizer", self.tokenizer, "no such tokenizer folder or tokenizer.json")
        return "tok" + hashlib.sha256(file.read_bytes()).hexdigest()[:12]

    def _prepared(self) -> bool:
        return (Path(self.data_dir) / MANIFEST).is_file()  # else prepare_data builds it

    def prepare_data(self) -> None:
        self._manifest = build_default_corpus(Path(self.data_dir), self.tokenizer_vocab_size, self.bytes_per_domain,
                                              self.tokenizer)
