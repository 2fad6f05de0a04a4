"""The on-disk layout of a prepared token dataset, written once and read by the DataModule.

    <root>/manifest.json          written last: its presence means the dataset is complete
    <root>/tokenizer.json         Hugging Face `tokenizers` file
    <root>/<split>/<domain>/      litdata shards of int32 token ids (TokensLoader), documents joined by EOS

Everything is first written under a temporary sibling folder and renamed into place, so an interrupted
build never leaves a folder that looks complete.
"""

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from litdata import optimize
from litdata.streaming.item_loader import TokensLoader

MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
SPLITS = ("train", "val", "test")


@dataclass
class Manifest:
    """What a prepared dataset holds: token counts per split and domain, and its tokenizer."""

    vocab_size: int
    eos_token_id: int
    tokens: dict[str, dict[str, int]]
    """tokens[split][domain]: number of tokens written."""
    source: str

    @property
    def domains(self) -> list[str]:
        return sorted(self.tokens["train"])

    def save(self, root: Path) -> None:
        (root / MANIFEST).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, root: Path) -> "Manifest":
        path = Path(root) / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: prepare the dataset first (or leave data.data_dir unset for the embedded corpus)"
            )
        return cls(**json.loads(path.read_text()))


def _encode_documents(documents: Sequence[str], tokenizer_path: str, eos_token_id: int) -> Iterator[torch.Tensor]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(tokenizer_path)
    for encoding in tokenizer.encode_batch(list(documents)):
        yield torch.tensor([*encoding.ids, eos_token_id], dtype=torch.int32)


@dataclass
class _EncodeBatch:
    """Picklable litdata worker function: one input is a batch of documents."""

    tokenizer_path: str
    eos_token_id: int

    def __call__(self, documents: Sequence[str]) -> Iterator[torch.Tensor]:
        yield from _encode_documents(documents, self.tokenizer_path, self.eos_token_id)


def write_token_shards(
    documents: Sequence[str], tokenizer_path: Path, eos_token_id: int, output_dir: Path,
    num_workers: int = 1, chunk_tokens: int = 1 << 20, documents_per_batch: int = 256,
) -> int:
    """Tokenize ``documents`` and write them as litdata token shards; returns the number of tokens written."""
    batches = [documents[i:i + documents_per_batch] for i in range(0, len(documents), documents_per_batch)]
    # Forked workers start in milliseconds where spawned ones re-import torch (about 1.5 s each); fork is only
    # safe before CUDA is initialised and is not the platform default outside Linux.
    fork_is_safe = sys.platform == "linux" and not torch.cuda.is_initialized()
    optimize(
        fn=_EncodeBatch(str(tokenizer_path), eos_token_id), inputs=batches, output_dir=str(output_dir),
        chunk_size=chunk_tokens, item_loader=TokensLoader(), num_workers=num_workers, mode="overwrite",
        verbose=False, start_method="fork" if fork_is_safe else None,
    )
    index = json.loads((output_dir / "index.json").read_text())
    return int(sum(chunk["dim"] for chunk in index["chunks"]))


def build_atomically(root: Path, build: Callable[[Path], Manifest]) -> Manifest:
    """Run ``build(tmp_dir)`` in a temporary sibling of ``root``, save its manifest, then rename it into place."""
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        manifest = build(tmp)
        manifest.save(tmp)
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest

