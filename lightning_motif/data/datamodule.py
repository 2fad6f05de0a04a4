"""DataModules that stream fixed-length token windows from litdata shards (see ``token_dataset`` for the layout)."""

import os
from pathlib import Path

import lightning as L
import torch
from litdata import CombinedStreamingDataset, StreamingDataLoader, StreamingDataset
from litdata.streaming.item_loader import TokensLoader

from components.config_error import ConfigError, require
from lightning_motif.data.default_corpus import build_default_corpus
from lightning_motif.data.token_dataset import MANIFEST, Manifest


class TokenShardDataModule(L.LightningDataModule):
    """Training windows of ``seq_len + 1`` tokens mixed over domains by fixed weights; one validation (and test)
    loader per domain.

    Each batch is an int32 tensor (batch_size, seq_len + 1): inputs are ``[:, :-1]``, next-token targets ``[:, 1:]``.
    """

    def __init__(
        self,
        data_dir: str,
        seq_len: int = 2048,
        batch_size: int = 8,
        domain_weights: dict[str, float] | None = None,
        num_workers: int = 0,
        seed: int = 42,
    ) -> None:
        super().__init__()
        self.data_dir = data_dir
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.domain_weights = domain_weights
        self.num_workers = num_workers
        self.seed = seed
        require(seq_len >= 1, self, "seq_len", "use a positive sequence length")
        require(batch_size >= 1, self, "batch_size", "use a positive per-device batch size")
        require(num_workers >= 0, self, "num_workers", "use 0 (load in the main process) or more workers")
        if domain_weights is not None:
            require(all(w >= 0 for w in domain_weights.values()) and sum(domain_weights.values()) > 0, self,
                    "domain_weights", "weights must be non-negative with a positive sum")
        self._manifest: Manifest | None = None

    def check_fits(self, model: L.LightningModule) -> None:
        """Let ``model`` refuse this data (sequence length, tokenizer size) with a ConfigError. The ``motif`` CLI
        calls this before the trainer starts; ``setup`` calls it again once ``prepare_data`` has made the data."""
        check = getattr(model, "check_data_fits", None)
        if check is not None:
            prepared = (Path(self.data_dir) / MANIFEST).is_file()
            check(self.seq_len, self.vocab_size if prepared else None)

    def setup(self, stage: str) -> None:
        if self.trainer is not None:
            self.check_fits(self.trainer.lightning_module)

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            self._manifest = Manifest.load(Path(self.data_dir))
        return self._manifest

    @property
    def vocab_size(self) -> int:
        """Size of the tokenizer's vocabulary; the model's vocab_size must be at least this."""
        return self.manifest.vocab_size

    @property
    def val_domains(self) -> list[str]:
        return self.manifest.domains

    def _weights(self) -> list[float]:
        domains = self.manifest.domains
        if self.domain_weights is None:
            return [float(self.manifest.tokens["train"][d]) for d in domains]
        unknown = sorted(set(self.domain_weights) - set(domains))
        if unknown:
            raise ConfigError(type(self).__name__, "domain_weights", self.domain_weights,
                              f"unknown domains {unknown}; this dataset has {domains}")
        return [float(self.domain_weights.get(d, 0.0)) for d in domains]

    def _dataset(self, split: str, domain: str, shuffle: bool) -> StreamingDataset:
        return StreamingDataset(
            os.path.join(self.data_dir, split, domain), item_loader=TokensLoader(block_size=self.seq_len + 1),
            shuffle=shuffle, drop_last=True, seed=self.seed,
        )

    def _loader(self, dataset: torch.utils.data.Dataset) -> StreamingDataLoader:
        return StreamingDataLoader(dataset, batch_size=self.batch_size, num_workers=self.num_workers, drop_last=True)

    def train_dataloader(self) -> StreamingDataLoader:
        weights = self._weights()
        kept = [(d, w) for d, w in zip(self.manifest.domains, weights) if w > 0]
        datasets = [self._dataset("train", d, shuffle=True) for d, _ in kept]
        total = sum(w for _, w in kept)
        mixed = CombinedStreamingDataset(
            datasets, seed=self.seed, weights=[w / total for _, w in kept], iterate_over_all=False
        )
        return self._loader(mixed)

    def val_dataloader(self) -> list[StreamingDataLoader]:
        return [self._loader(self._dataset("val", d, shuffle=False)) for d in self.val_domains]

    def test_dataloader(self) -> list[StreamingDataLoader]:
        return [self._loader(self._dataset("test", d, shuffle=False)) for d in self.val_domains]


class EmbeddedCorpusDataModule(TokenShardDataModule):
    """The offline default: code, prose and math built from the Python install on first use, then cached.

    ``cache_dir`` defaults to $MOTIF_CACHE or ~/.cache/lightning-motif; the corpus folder name records the
    tokenizer size and corpus size, so different settings never overwrite each other.
    """

    def __init__(
        self,
        seq_len: int = 256,
        batch_size: int = 16,
        domain_weights: dict[str, float] | None = None,
        num_workers: int = 0,
        seed: int = 42,
        tokenizer_vocab_size: int = 4096,
        bytes_per_domain: int = 3_000_000,
        cache_dir: str | None = None,
    ) -> None:
        cache = Path(cache_dir or os.environ.get("MOTIF_CACHE") or Path.home() / ".cache" / "lightning-motif")
        super().__init__(
            str(cache / f"embedded-corpus-v{tokenizer_vocab_size}-{bytes_per_domain}"), seq_len, batch_size,
            domain_weights, num_workers, seed,
        )
        self.tokenizer_vocab_size = tokenizer_vocab_size
        self.bytes_per_domain = bytes_per_domain
        require(tokenizer_vocab_size >= 512, self, "tokenizer_vocab_size", "train the BPE tokenizer with at least 512 tokens")
        require(bytes_per_domain >= 100_000, self, "bytes_per_domain", "use at least 100_000 bytes per domain")

    def prepare_data(self) -> None:
        self._manifest = build_default_corpus(Path(self.data_dir), self.tokenizer_vocab_size, self.bytes_per_domain)
