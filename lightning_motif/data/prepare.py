"""``motif prepare``: tokenize raw corpora into litdata token shards, one folder per split and domain.

    motif prepare --config experiments/data/prepare-template.yaml

Output (the layout of ``token_dataset``): ``tokenizer.json``, ``<split>/<domain>/`` shards and, written last,
``manifest.json`` with tokens, documents and skipped records per split and domain, the vocabulary size and the
tokenizer's SHA-256. Each split/domain part is written into a temporary folder and renamed into place with a
record of its inputs, so a re-run skips every part whose inputs are unchanged and an interrupted run never
leaves a part that looks complete.
"""

import hashlib
import json
import os
import re
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from litdata import optimize
from litdata.streaming.item_loader import TokensLoader

from components.config_error import ConfigError
from lightning_motif.data.sources import (
    SUPPORTED_SUFFIXES,
    WorkItem,
    document_key,
    first_record_fields,
    list_input_files,
    read_documents,
    split_of,
    work_items,
)
from lightning_motif.data.token_dataset import MANIFEST, TOKENIZER, Manifest

PART_RECORD = ".motif-part.json"
DOMAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(kw_only=True)
class DomainSource:
    """Where one domain's documents are. Folders are searched recursively for .txt, .jsonl and .parquet files."""

    paths: list[str]
    """Training inputs; documents are also drawn from them for val/test by ``val_fraction``/``test_fraction``
    unless ``val_paths``/``test_paths`` are given."""
    val_paths: list[str] = field(default_factory=list)
    """Separate validation inputs (then no training document is held out for validation)."""
    test_paths: list[str] = field(default_factory=list)
    """Separate test inputs (then no training document is held out for test)."""
    text_field: str = "text"
    """Field (.jsonl) or column (.parquet) that holds the text."""


@dataclass(kw_only=True)
class PrepareConfig:
    """What ``motif prepare`` reads and writes."""

    output_dir: str
    """The dataset folder: tokenizer.json, manifest.json and <split>/<domain>/ shards."""
    domains: dict[str, DomainSource]
    """Domain name -> its inputs; names become the curriculum's mixture keys and the validation loss tags."""
    tokenizer: str | None = None
    """A Hugging Face ``tokenizer.json``; when unset, a byte-level BPE of ``vocab_size`` is trained on the inputs."""
    vocab_size: int = 32000
    """Vocabulary of the BPE trained when ``tokenizer`` is unset."""
    eos_token: str = "<|endoftext|>"
    """Appended after every document; must be in the tokenizer's vocabulary."""
    val_fraction: float = 0.005
    """Share of each domain's documents held out for validation (chosen by a hash of the document)."""
    test_fraction: float = 0.0
    """Share of each domain's documents held out for test."""
    tokenizer_training_bytes: int = 200_000_000
    """At most this many bytes per domain are read to train the tokenizer."""
    model_vocab_size: int | None = None
    """When set, fail unless the tokenizer fits a model of this vocabulary size."""
    num_workers: int = max(1, (os.cpu_count() or 2) - 1)
    """Tokenizing processes."""
    seed: int = 0
    """Seed of the hash that picks the held-out documents."""
    verbose: bool = True
    """Show litdata's progress bar and worker messages for each part."""

    def fail(self, field_name: str, value: object, fix: str) -> ConfigError:
        return ConfigError("PrepareConfig", field_name, value, fix)


@dataclass
class _Part:
    split: str
    domain: str
    items: list[WorkItem]
    select_by_fraction: bool
    """True when the part is drawn from the training paths by hashed fraction, False when all documents count."""
    text_field: str


def _input_fingerprint(items: list[WorkItem]) -> list:
    return [(i.path, i.start, i.stop, os.stat(i.path).st_size, os.stat(i.path).st_mtime_ns) for i in items]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _resolve_files(config: PrepareConfig, domain: str, key: str, paths: list[str]) -> list[tuple[Path, str]]:
    files = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise config.fail(f"domains.{domain}.{key}", raw, "path does not exist: fix the path or remove it")
        found = list_input_files(path)
        if not found:
            raise config.fail(f"domains.{domain}.{key}", raw, f"no {'/'.join(SUPPORTED_SUFFIXES)} files there")
        files += found
    return files


def plan_parts(config: PrepareConfig) -> list[_Part]:
    """Check every input before any work is done, and list the split/domain parts to write."""
    if not config.domains:
        raise config.fail("domains", {}, "name at least one domain with its paths")
    if not (0 <= config.val_fraction < 1 and 0 <= config.test_fraction < 1 and config.val_fraction + config.test_fraction < 1):
        raise config.fail("val_fraction", config.val_fraction, "val_fraction + test_fraction must lie in [0, 1)")
    if config.num_workers < 1:
        raise config.fail("num_workers", config.num_workers, "use at least one worker process")
    parts = []
    for domain, source in config.domains.items():
        if not DOMAIN_NAME.match(domain):
            raise config.fail("domains", domain, "domain names become folder names: use letters, digits, '_', '-', '.'")
        if not source.paths:
            raise config.fail(f"domains.{domain}.paths", [], "give at least one file or folder of training documents")
        resolved = {key: _resolve_files(config, domain, key, getattr(source, key))
                    for key in ("paths", "val_paths", "test_paths")}
        for file in {f for files in resolved.values() for f, _ in files}:
            fields = first_record_fields(file)
            if fields is not None and source.text_field not in fields:
                raise config.fail(f"domains.{domain}.text_field", source.text_field,
                                  f"not a field of {file} (it has {fields}): set text_field to the one holding the text")
        train_items = work_items(resolved["paths"])
        parts.append(_Part("train", domain, train_items, bool(config.val_fraction or config.test_fraction), source.text_field))
        for split, key, fraction in (("val", "val_paths", config.val_fraction), ("test", "test_paths", config.test_fraction)):
            if resolved[key]:
                parts.append(_Part(split, domain, work_items(resolved[key]), False, source.text_field))
            elif fraction > 0:
                parts.append(_Part(split, domain, train_items, True, source.text_field))
    return parts


@dataclass
class _TokenizePart:
    """The litdata worker function for one part: read a work item, keep this part's documents, tokenize them."""

    tokenizer_path: str
    eos_token_id: int
    part: _Part
    val_fraction: float
    test_fraction: float
    seed: int
    stats_dir: str

    def __call__(self, item: WorkItem) -> Iterator[torch.Tensor]:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # forked workers: parallelism is already per process
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(self.tokenizer_path)
        skipped, documents, tokens = Counter(), 0, 0
        batch: list[str] = []

        def encoded(texts: list[str]) -> Iterator[torch.Tensor]:
            for encoding in tokenizer.encode_batch(texts):
                yield torch.tensor([*encoding.ids, self.eos_token_id], dtype=torch.int32)

        for position, text in read_documents(item, self.part.text_field, skipped):
            if self.part.select_by_fraction:
                key = document_key(item, position)
                if split_of(key, self.seed, self.val_fraction, self.test_fraction) != self.part.split:
                    continue
            batch.append(text)
            if len(batch) == 64:
                for ids in encoded(batch):
                    documents, tokens = documents + 1, tokens + len(ids)
                    yield ids
                batch = []
        for ids in encoded(batch):
            documents, tokens = documents + 1, tokens + len(ids)
            yield ids
        if self.part.select_by_fraction and self.part.split != "train":
            skipped = Counter()  # the train part reads the same records and reports them once
        name = hashlib.sha1(f"{item}".encode()).hexdigest()
        Path(self.stats_dir, f"{name}.json").write_text(
            json.dumps({"documents": documents, "tokens": tokens, "skipped": dict(skipped)}))


def _training_texts(config: PrepareConfig, parts: list[_Part]) -> Iterator[str]:
    for part in parts:
        if part.split != "train":
            continue
        budget, skipped = config.tokenizer_training_bytes, Counter()
        for item in part.items:
            for position, text in read_documents(item, part.text_field, skipped):
                if part.select_by_fraction and split_of(document_key(item, position), config.seed,
                                                        config.val_fraction, config.test_fraction) != "train":
                    continue
                yield text
                budget -= len(text)
                if budget <= 0:
                    break
            if budget <= 0:
                break


def _prepare_tokenizer(config: PrepareConfig, parts: list[_Part], output: Path):
    from tokenizers import Tokenizer

    target = output / TOKENIZER
    if config.tokenizer is not None:
        source = Path(config.tokenizer).expanduser()
        if not source.is_file():
            raise config.fail("tokenizer", config.tokenizer, "no such tokenizer.json: fix the path, or unset it to train one")
        if not target.exists() or _sha256(target) != _sha256(source):
            shutil.copyfile(source, target)
        tokenizer = Tokenizer.from_file(str(target))
    else:
        from lightning_motif.data.tokenizer_training import train_bpe_tokenizer

        if config.model_vocab_size is not None and config.vocab_size > config.model_vocab_size:
            raise config.fail("vocab_size", config.vocab_size,
                              f"larger than the model's vocabulary ({config.model_vocab_size}): lower vocab_size")
        recipe = output / ".tokenizer-recipe.json"
        wanted = json.dumps({"vocab": config.vocab_size, "eos": config.eos_token, "bytes": config.tokenizer_training_bytes,
                             "inputs": [_input_fingerprint(p.items) for p in parts if p.split == "train"]})
        if target.exists() and recipe.exists() and recipe.read_text() == wanted:
            _say(config, f"[prepare] tokenizer: up to date ({target})")
            tokenizer = Tokenizer.from_file(str(target))
        else:
            _say(config, f"[prepare] tokenizer: training a byte-level BPE of {config.vocab_size} tokens on the inputs")
            tokenizer = train_bpe_tokenizer(_training_texts(config, parts), config.vocab_size, config.eos_token, target)
            recipe.write_text(wanted)
    eos = tokenizer.token_to_id(config.eos_token)
    if eos is None:
        raise config.fail("eos_token", config.eos_token, "not in the tokenizer's vocabulary: set eos_token to one of its special tokens")
    vocab_size = tokenizer.get_vocab_size()
    if config.model_vocab_size is not None and vocab_size > config.model_vocab_size:
        raise config.fail("model_vocab_size", config.model_vocab_size,
                          f"the tokenizer has {vocab_size} tokens: use a model with vocab_size >= {vocab_size}")
    return tokenizer, eos


def _write_part(config: PrepareConfig, part: _Part, output: Path, tokenizer_sha: str, eos: int) -> dict:
    final = output / part.split / part.domain
    fingerprint = {
        "inputs": _input_fingerprint(part.items), "text_field": part.text_field, "tokenizer": tokenizer_sha,
        "eos": eos, "split_rule": [part.select_by_fraction, config.val_fraction, config.test_fraction, config.seed],
    }
    record_path = final / PART_RECORD
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record["fingerprint"] == json.loads(json.dumps(fingerprint)):
            _say(config, f"[prepare] {part.split}/{part.domain}: up to date, skipped")
            return record
    partial = output / f".partial-{part.split}-{part.domain}"
    shutil.rmtree(partial, ignore_errors=True)
    stats_dir = partial / ".stats"
    stats_dir.mkdir(parents=True)
    _say(config, f"[prepare] {part.split}/{part.domain}: tokenizing {len(part.items)} work items")
    fork_is_safe = sys.platform == "linux" and not torch.cuda.is_initialized()
    optimize(
        fn=_TokenizePart(str(output / TOKENIZER), eos, part, config.val_fraction, config.test_fraction, config.seed,
                         str(stats_dir)),
        inputs=part.items, output_dir=str(partial), chunk_size=1 << 22, item_loader=TokensLoader(),
        num_workers=min(config.num_workers, len(part.items)), mode="overwrite",
        start_method="fork" if fork_is_safe else None, verbose=config.verbose,
    )
    totals, skipped = Counter(), Counter()
    for stats_file in stats_dir.iterdir():
        stats = json.loads(stats_file.read_text())
        totals.update(documents=stats["documents"], tokens=stats["tokens"])
        skipped.update(stats["skipped"])
    shutil.rmtree(stats_dir)
    record = {"fingerprint": fingerprint, "documents": totals["documents"], "tokens": totals["tokens"],
              "skipped": dict(skipped)}
    (partial / PART_RECORD).write_text(json.dumps(record))
    shutil.rmtree(final, ignore_errors=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(partial, final)
    return json.loads(json.dumps(record))


def prepare(config: PrepareConfig) -> Manifest:
    """Check the inputs, make or load the tokenizer, write every part that is missing or stale, then the manifest."""
    parts = plan_parts(config)
    output = Path(config.output_dir).expanduser()
    output.mkdir(parents=True, exist_ok=True)
    (output / MANIFEST).unlink(missing_ok=True)  # the manifest marks a complete dataset: gone until it is again
    tokenizer, eos = _prepare_tokenizer(config, parts, output)
    tokenizer_sha = _sha256(output / TOKENIZER)
    records = {(p.split, p.domain): _write_part(config, p, output, tokenizer_sha, eos) for p in parts}
    empty = [domain for (split, domain), r in records.items() if split == "train" and r["tokens"] == 0]
    if empty:
        raise config.fail(f"domains.{empty[0]}.paths", config.domains[empty[0]].paths,
                          f"no usable documents (skipped: {records[('train', empty[0])]['skipped']})")
    manifest = Manifest(
        vocab_size=tokenizer.get_vocab_size(), eos_token_id=eos, tokenizer_sha256=tokenizer_sha,
        tokens=_by_split(records, "tokens"), documents=_by_split(records, "documents"),
        skipped=_by_split(records, "skipped"), source=json.dumps(asdict(config), sort_keys=True),
    )
    tmp = output / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    os.replace(tmp, output / MANIFEST)
    for split, by_domain in manifest.tokens.items():
        for domain, tokens in by_domain.items():
            skipped = manifest.skipped[split][domain]
            note = f", skipped {sum(skipped.values())} ({', '.join(f'{k}: {v}' for k, v in sorted(skipped.items()))})" if skipped else ""
            _say(config, f"[prepare] {split}/{domain}: {manifest.documents[split][domain]} documents, {tokens} tokens{note}")
    return manifest


def _say(config: PrepareConfig, message: str) -> None:
    if config.verbose:
        print(message, flush=True)


def _by_split(records: dict, key: str) -> dict:
    result: dict[str, dict] = {}
    for (split, domain), record in records.items():
        result.setdefault(split, {})[domain] = record[key]
    return result
