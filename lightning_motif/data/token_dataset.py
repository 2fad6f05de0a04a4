"""The on-disk layout of a prepared token dataset (written by ``motif prepare``, read by the DataModules).

    <root>/manifest.json          written last: its presence means the dataset is complete
    <root>/tokenizer.json         Hugging Face ``tokenizers`` file
    <root>/<split>/<domain>/      litdata shards of int32 token ids (TokensLoader), documents joined by EOS
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from components.config_error import ConfigError

MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"


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

    @property
    def domains(self) -> list[str]:
        return sorted(self.tokens["train"])

    def split_domains(self, split: str) -> list[str]:
        """Domains that have tokens in ``split`` (a small domain may have no validation documents)."""
        return sorted(d for d, n in self.tokens.get(split, {}).items() if n > 0)

    @classmethod
    def load(cls, root: Path) -> "Manifest":
        path = Path(root) / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: run `motif prepare` for this data_dir first (an interrupted prepare leaves no manifest)"
            )
        return cls(**json.loads(path.read_text()))


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
