"""The embedded corpus: made offline through ``prepare``, cached, and readable by the DataModule."""

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from lightning_motif.data.default_corpus import build_default_corpus, split_into_documents
from lightning_motif.data.token_dataset import MANIFEST, TOKENIZER, Manifest


@pytest.fixture
def datamodule(embedded_datamodule):
    return embedded_datamodule


def test_corpus_has_three_domains_and_three_splits(datamodule):
    root = Path(datamodule.data_dir)
    manifest = Manifest.load(root)
    assert manifest.domains == ["code", "math", "prose"]
    for split in ("train", "val", "test"):
        assert manifest.split_domains(split) == ["code", "math", "prose"]
    assert manifest.tokens["train"]["code"] > 10 * manifest.tokens["val"]["code"]
    tokenizer = Tokenizer.from_file(str(root / TOKENIZER))
    assert tokenizer.get_vocab_size() == manifest.vocab_size == 512
    text = "def add(a, b):\n    return a + b  # 12 + 35 = 47"
    assert tokenizer.decode(tokenizer.encode(text).ids) == text


def test_rebuilding_reuses_the_cached_corpus(datamodule):
    root = Path(datamodule.data_dir)
    parts = {p: p.stat().st_mtime_ns for p in root.glob("*/*/index.json")}
    build_default_corpus(root, 512, 200_000)
    assert {p: p.stat().st_mtime_ns for p in root.glob("*/*/index.json")} == parts
    assert (root / MANIFEST).is_file()


def test_batches_are_token_windows(datamodule):
    step = next(iter(datamodule.train_dataloader()))
    assert step["tokens"].ndim == 2 and step["tokens"].shape[1] == 33
    assert 0 <= step["tokens"].min() and step["tokens"].max() < 512
    val_loaders = datamodule.val_dataloader()
    assert len(val_loaders) == 3
    assert next(iter(val_loaders[0])).shape == (4, 65)


def test_documents_are_cut_at_blank_lines():
    text = "\n\n".join(["a" * 30] * 10)
    pieces = split_into_documents(text, max_chars=100)
    assert "\n\n".join(pieces) == text
    assert all(len(p) <= 100 for p in pieces)
