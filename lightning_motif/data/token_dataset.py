"""The on-disk layout of a prepared token dataset (written by ``motif prepare``, read by the DataModules).

    <root>/manifest.json          written last: its presence means the dataset is complete
    <root>/tokenizer.json         Hugging Face ``tokenizers`` file
    <root>/<split>/<domain>/      litdata shards of int32 token ids (TokensLoader), documents joined by EOS;
                                  for a chat domain one item per conversation and lengths.npy
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from litdata import StreamingDataset
from litdata.streaming.item_loader import TokensLoader
from torch.utils.data import Dataset

from components.config_error import ConfigError

MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
LENGTHS = "lengths.npy"
"""In a chat part's folder: each conversation's token count, in storage order (for packing without reading)."""
TOKENIZER_COMPANIONS = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json",
                        "merges.txt", "chat_template.jinja")
"""The files of a Hugging Face tokenizer folder besides tokenizer.json (special tokens, chat template)."""


@dataclass
class Manifest:
    """What a prepared dataset holds, per split ("train", "val", "test") and domain."""

    vocab_size: int
    eos_token_id: int
    tokenizer_sha256: str
    tokens: dict[str, dict[str, int]]
    """tokens[split][domain]: tokens written (EOS included)."""
    documents: dict[str, dict[str, int]]
    skipped: dict[str, dict[str, dict[str, int]]]
    """skipped[split][domain][reason]: records left out (invalid_utf8, invalid_json, missing_field, empty)."""
    source: str
    """The prepare config that made the dataset (JSON)."""
    replaced_bytes: dict[str, dict[str, int]] = field(default_factory=dict)
    """replaced_bytes[split][domain]: bytes of .txt documents that were not UTF-8, replaced by U+FFFD."""
    tokenizer_files: list[str] = field(default_factory=list)
    """The tokenizer folder's other files kept beside tokenizer.json (tokenizer_config.json with its chat
    template, special tokens, added tokens)."""
    formats: dict[str, str] = field(default_factory=dict)
    """formats[domain]: "text" (documents, for pre-training; also every domain of a dataset from before chat
    domains existed) or "chat" (conversations with their assistant-token masks, for SFT)."""

    def domains_of(self, format: str) -> list[str]:
        return [d for d in self.domains if self.formats.get(d, "text") == format]

    @property
    def domains(self) -> list[str]:
        return sorted(self.tokens["train"])

    def split_domains(self, split: str) -> list[str]:
        """Domains that have tokens in ``split`` (a small domain may have no validation documents)."""
        return sorted(d for d, n in self.tokens.get(split, {}).items() if n > 0)

    @classmethod
    def load(cls, root: Path) -> "Manifest":
        """The manifest of the dataset at ``root``; ConfigError (field ``data_dir``) naming why there is none."""
        path = Path(root) / MANIFEST
        if not path.is_file():
            raise ConfigError("data", "data_dir", str(root), _why_no_dataset(Path(root)))
        return cls(**json.loads(path.read_text()))


def _why_no_dataset(root: Path) -> str:
    if not root.exists():
        return "no such folder: prepare a dataset there with `motif prepare` (its output_dir), or fix the path"
    for parent in (root.parent, root.parent.parent):
        if (parent / MANIFEST).is_file():
            return f"this is a folder inside the dataset at {parent}: set data_dir to {parent}"
    if not any(root.iterdir()):
        return "the folder is empty: prepare a dataset there with `motif prepare` (its output_dir)"
    return ("no manifest.json: not a prepared dataset, or its `motif prepare` did not finish (run the same prepare "
            "again to complete it)")


def _chunks(shard_dir: str) -> list[dict]:
    """The chunk records of a litdata shard folder's index.json."""
    index_path = Path(shard_dir) / "index.json"
    if not index_path.is_file():
        raise ConfigError("data", "data_dir", shard_dir, "no litdata index.json here: prepare the data with `motif prepare`")
    return json.loads(index_path.read_text())["chunks"]


def count_pages(shard_dir: str, page_tokens: int) -> int:
    """Pages of ``page_tokens`` tokens in a litdata token shard folder, read from its index (pages never span
    chunks, as litdata's TokensLoader cuts them), whatever the process's rank."""
    return sum(chunk["dim"] // page_tokens for chunk in _chunks(shard_dir))


def verify_shards(shard_dir: str) -> None:
    """Raise ConfigError when a chunk its index lists is missing or has another size than the index records
    (a copy cut short, a disk error), before a training run would meet it hours in."""
    for chunk in _chunks(shard_dir):
        path = Path(shard_dir) / chunk["filename"]
        if not path.is_file():
            raise ConfigError("data", "data_dir", shard_dir, f"shard {chunk['filename']} is missing: restore it or "
                              "prepare the data again with `motif prepare`")
        if chunk.get("chunk_bytes") is not None and path.stat().st_size != chunk["chunk_bytes"]:
            raise ConfigError("data", "data_dir", shard_dir,
                              f"shard {chunk['filename']} has {path.stat().st_size} bytes where its index records "
                              f"{chunk['chunk_bytes']} (corrupt or cut short): restore it or prepare the data again "
                              "with `motif prepare`")


class TokenWindows(Dataset):
    """Consecutive windows of ``window`` tokens of a shard folder, by index (map-style, unlike litdata's streaming
    iteration): a DataLoader reads them in the same order whatever its number of workers, so a validation run
    limited to N batches sees the same windows every time, and under DDP Lightning's distributed sampler splits
    them between the ranks."""

    def __init__(self, shard_dir: str, window: int) -> None:
        self.shard_dir, self.window = shard_dir, window
        self._length = count_pages(shard_dir, window)
        self._windows: StreamingDataset | None = None

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int):
        if self._windows is None:  # opened in the process that reads (a loader worker)
            self._windows = StreamingDataset(self.shard_dir, item_loader=TokensLoader(block_size=self.window))
        return self._windows[index]
