"""The embedded corpus: built offline, complete or absent, cached, and streamed as token windows."""

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from components.config_error import ConfigError
from lightning_motif.data.datamodule import EmbeddedCorpusDataModule, TokenShardDataModule
from lightning_motif.data.default_corpus import build_default_corpus
from lightning_motif.data.token_dataset import MANIFEST, TOKENIZER, Manifest, build_atomically


@pytest.fixture(scope="module")
def datamodule(corpus_cache):
    dm = EmbeddedCorpusDataModule(seq_len=64, batch_size=4, tokenizer_vocab_size=512, bytes_per_domain=200_000,
                                  cache_dir=str(corpus_cache))
    dm.prepare_data()
    return dm


def test_corpus_has_three_domains_and_three_splits(datamodule):
    root = Path(datamodule.data_dir)
    manifest = Manifest.load(root)
    assert manifest.domains == ["code", "math", "prose"]
    for split in ("train", "val", "test"):
        for domain in manifest.domains:
            assert manifest.tokens[split][domain] > 0
            assert (root / split / domain / "index.json").is_file()
    assert manifest.tokens["train"]["code"] > 20 * manifest.tokens["val"]["code"]
    tokenizer = Tokenizer.from_file(str(root / TOKENIZER))
    assert tokenizer.get_vocab_size() == manifest.vocab_size == 512
    text = "def add(a, b):\n    return a + b  # 12 + 35 = 47"
    assert tokenizer.decode(tokenizer.encode(text).ids) == text


def test_rebuilding_reuses_the_cached_corpus(datamodule):
    manifest_path = Path(datamodule.data_dir) / MANIFEST
    before = manifest_path.stat().st_mtime_ns
    build_default_corpus(Path(datamodule.data_dir), 512, 200_000)
    assert manifest_path.stat().st_mtime_ns == before


def test_interrupted_build_leaves_nothing_that_looks_complete(tmp_path):
    def failing_build(folder: Path) -> Manifest:
        (folder / "train").mkdir()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_atomically(tmp_path / "corpus", failing_build)
    assert list(tmp_path.iterdir()) == []


def test_batches_are_token_windows(datamodule):
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch.shape == (4, 65) and batch.dtype == torch.int32
    assert 0 <= batch.min() and batch.max() < 512
    val_loaders = datamodule.val_dataloader()
    assert len(val_loaders) == 3
    assert next(iter(val_loaders[0])).shape == (4, 65)


def test_domain_weights_select_domains(datamodule):
    math_only = TokenShardDataModule(datamodule.data_dir, seq_len=64, batch_size=4, domain_weights={"math": 1.0})
    tokenizer = Tokenizer.from_file(str(Path(datamodule.data_dir) / TOKENIZER))
    batches = iter(math_only.train_dataloader())
    windows = [window for _ in range(3) for window in next(batches)]
    assert all("Q: " in text or "A: " in text for text in map(tokenizer.decode, (w.tolist() for w in windows)))


def test_unknown_domain_is_a_config_error(datamodule):
    dm = TokenShardDataModule(datamodule.data_dir, domain_weights={"poetry": 1.0})
    with pytest.raises(ConfigError, match=r"TokenShardDataModule.domain_weights .*unknown domains \['poetry'\]"):
        dm.train_dataloader()


def test_missing_dataset_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="prepare the dataset first"):
        _ = TokenShardDataModule(str(tmp_path / "nowhere")).vocab_size


def test_manifest_is_json_with_token_counts(datamodule):
    data = json.loads((Path(datamodule.data_dir) / MANIFEST).read_text())
    assert set(data) == {"vocab_size", "eos_token_id", "tokens", "source"}
