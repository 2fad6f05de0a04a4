"""``motif prepare``: tokenize raw corpora into litdata token shards, one folder per split and domain.

    motif prepare --config experiments/data/prepare-template.yaml

Output (the layout of ``token_dataset``): ``tokenizer.json``, ``<split>/<domain>/`` shards and, written last,
``manifest.json`` with tokens, documents, skipped records and replaced bytes per split and domain, the
vocabulary size and the tokenizer's SHA-256.

Every input and the tokenizer are checked before anything is written. Each split/domain part is built in a
staging folder with a record of its inputs and of its files' sizes and checksums; only when all of them are
whole does the run replace the dataset's files (the manifest goes first and comes back last), so a bad input
or a kill never damages a complete dataset, a re-run skips every part whose inputs are unchanged and whose
files are intact, and a part cut short is rebuilt. The shards are a pure function of the inputs and the
config: workers tokenize in parallel, one process writes in input order, whatever ``num_workers`` is.
"""

import hashlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from litdata import optimize
from litdata.streaming.item_loader import TokensLoader
from tqdm import tqdm

from components.config_error import ConfigError
from lightning_motif.data.chat import CHATML_MARKERS, ChatRenderer, template_named
from lightning_motif.data.sources import (
    FIELD_PROBE_RECORDS,
    REPLACED_BYTES,
    SUPPORTED_SUFFIXES,
    WorkItem,
    document_key,
    fields_of_first_records,
    list_input_files,
    read_conversations,
    read_documents,
    split_of,
    work_items,
)
from lightning_motif.data.token_dataset import LENGTHS, MANIFEST, TOKENIZER, TOKENIZER_COMPANIONS, Manifest
from lightning_motif.text import TextTokenizer, folder_chat_template, token_text

PART_RECORD = ".motif-part.json"
TOKENIZER_RECIPE = ".tokenizer-recipe.json"
CHUNK_TOKENS = 1 << 22
PR_SET_PDEATHSIG = 1
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
    format: Literal["text", "chat"] = "text"
    """"text": documents for pre-training (token streams joined by EOS). "chat": conversations for supervised
    fine-tuning, .jsonl records (or .parquet rows) whose ``messages_field`` is a list of {"role": "system" |
    "user" | "assistant", "content": str}; each is rendered with ``chat_template`` and stored whole, with the
    mask of its assistant tokens (``lightning_motif.data.chat``), for ``SFTDataModule``."""
    messages_field: str = "messages"
    """Field (.jsonl) or column (.parquet) of a chat record's messages."""


@dataclass(kw_only=True)
class PrepareConfig:
    """What ``motif prepare`` reads and writes."""

    output_dir: str
    """The dataset folder: tokenizer.json, manifest.json and <split>/<domain>/ shards."""
    domains: dict[str, DomainSource]
    """Domain name -> its inputs; names become the curriculum's mixture keys and the validation loss tags."""
    tokenizer: str | None = None
    """A Hugging Face tokenizer folder (tokenizer.json with tokenizer_config.json, special_tokens_map.json,
    added_tokens.json, as the released models ship it) or a tokenizer.json; when unset, a byte-level BPE of
    ``vocab_size`` is trained on the inputs. The vocabulary counts the added tokens."""
    vocab_size: int = 32000
    """Vocabulary of the BPE trained when ``tokenizer`` is unset."""
    eos_token: str | None = None
    """Appended after every document; must be in the tokenizer's vocabulary. Unset: the tokenizer folder's
    tokenizer_config.json eos_token, else <|endoftext|>."""
    chat_template: str | None = None
    """How chat domains are rendered: "chatml" (the built-in ``lightning_motif.data.chat.CHATML``), a Jinja
    template as ``transformers`` writes them, or unset: the tokenizer folder's tokenizer_config.json template."""
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
    chat: bool = False
    """Conversations (read from ``text_field`` as messages, one sample per record) instead of documents."""


def _input_fingerprint(items: list[WorkItem]) -> list:
    return [(i.path, i.start, i.stop, os.stat(i.path).st_size, os.stat(i.path).st_mtime_ns) for i in items]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


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
        if source.format not in ("text", "chat"):
            raise config.fail(f"domains.{domain}.format", source.format, 'use "text" (pre-training) or "chat" (SFT)')
        chat = source.format == "chat"
        field_key, field_name = ("messages_field", source.messages_field) if chat else ("text_field", source.text_field)
        for file in sorted({f for files in resolved.values() for f, _ in files}):
            if chat and file.suffix == ".txt":
                raise config.fail(f"domains.{domain}.paths", str(file), "a chat domain reads .jsonl or .parquet "
                                  "records of messages: convert it, or set format: text")
            fields = fields_of_first_records(file, field_name)
            if fields is not None:  # a record that lacks it later is skipped and counted instead
                raise config.fail(f"domains.{domain}.{field_key}", field_name,
                                  f"in none of the first {FIELD_PROBE_RECORDS} records of {file} (they have {fields}): "
                                  f"set {field_key} to the one holding the {'messages' if chat else 'text'}")
        train_items = work_items(resolved["paths"])
        parts.append(_Part("train", domain, train_items, bool(config.val_fraction or config.test_fraction), field_name,
                           chat))
        for split, key, fraction in (("val", "val_paths", config.val_fraction), ("test", "test_paths", config.test_fraction)):
            if resolved[key]:
                parts.append(_Part(split, domain, work_items(resolved[key]), False, field_name, chat))
            elif fraction > 0:
                parts.append(_Part(split, domain, train_items, True, field_name, chat))
    return parts


def _die_with_parent() -> None:
    """Worker set-up: a worker dies with ``motif prepare`` (Linux: the parent-death signal), so a killed prepare
    leaves no process writing into its partial folders; tokenizers run one thread per worker process."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@lru_cache(maxsize=1)
def _load_tokenizer(path: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)


@dataclass
class _TokenizeItem:
    """Pool task: read one work item, keep this part's documents, tokenize them (EOS after each) into
    ``<tokens_dir>/<index>.npz`` (all tokens, and where each document ends); returns the item's counts."""

    tokenizer_path: str
    eos_token_id: int
    part: _Part
    val_fraction: float
    test_fraction: float
    seed: int
    tokens_dir: str
    chat_template: str | None = None
    special_tokens: dict | None = None

    def _kept(self, item: WorkItem, position: int) -> bool:
        return not self.part.select_by_fraction or split_of(
            document_key(item, position), self.seed, self.val_fraction, self.test_fraction) == self.part.split

    def _conversations(self, item: WorkItem, counts: Counter) -> list[np.ndarray]:
        """Each kept conversation in its stored form (``ChatSample.stored``); no EOS (a conversation is a sample
        of its own)."""
        tokenizer = TextTokenizer(self.tokenizer_path)
        tokenizer.special = dict(self.special_tokens or {})
        render = ChatRenderer(tokenizer, self.chat_template)
        samples = []
        for position, messages in read_conversations(item, self.part.text_field, counts):
            if self._kept(item, position):
                try:
                    sample = render(messages)
                except Exception:  # a template that refuses a record (raise_exception) or renders no turns
                    counts["template_error"] += 1
                    continue
                samples.append(sample.stored())
        return samples

    def __call__(self, indexed: tuple[int, WorkItem]) -> dict:
        index, item = indexed
        counts: Counter = Counter()
        if self.part.chat:
            ids = self._conversations(item, counts)
        else:
            tokenizer = _load_tokenizer(self.tokenizer_path)
            texts = [text for position, text in read_documents(item, self.part.text_field, counts)
                     if self._kept(item, position)]
            ids = [np.array([*encoding.ids, self.eos_token_id], dtype=np.int32)
                   for start in range(0, len(texts), 64) for encoding in tokenizer.encode_batch(texts[start:start + 64])]
        path = os.path.join(self.tokens_dir, f"{index:08d}.npz")
        np.savez(path, tokens=np.concatenate(ids) if ids else np.zeros(0, np.int32),
                 ends=np.cumsum([len(x) for x in ids], dtype=np.int64))
        replaced = counts.pop(REPLACED_BYTES, 0)
        if self.part.select_by_fraction and self.part.split != "train":
            counts, replaced = Counter(), 0  # the train part reads the same records and reports them once
        return {"path": path, "documents": len(ids), "tokens": int(sum(len(x) for x in ids)),
                "skipped": dict(counts), "replaced_bytes": replaced}


def _documents_of(path: str) -> Iterator[torch.Tensor]:
    """litdata's writer function: the documents (or conversations) of one tokenized work item, in order."""
    _die_with_parent()
    with np.load(path) as data:
        tokens, ends = data["tokens"], data["ends"]
    start = 0
    for end in ends.tolist():
        yield torch.from_numpy(tokens[start:end])
        start = end


def _training_texts(config: PrepareConfig, parts: list[_Part]) -> Iterator[str]:
    for part in parts:
        if part.split != "train":
            continue
        budget, skipped = config.tokenizer_training_bytes, Counter()
        for item in part.items:
            records = (((position, "\n".join(m["content"] for m in messages))
                        for position, messages in read_conversations(item, part.text_field, skipped))
                       if part.chat else read_documents(item, part.text_field, skipped))
            for position, text in records:
                if part.select_by_fraction and split_of(document_key(item, position), config.seed,
                                                        config.val_fraction, config.test_fraction) != "train":
                    continue
                yield text
                budget -= len(text)
                if budget <= 0:
                    break
            if budget <= 0:
                break


@dataclass
class _TokenizerChoice:
    """The tokenizer this run tokenizes with: ``path`` is the dataset's own tokenizer.json when it is up to date,
    else a staged file that ``commit`` moves into place (with the recipe of a trained one)."""

    path: Path
    tokenizer: object
    eos: int
    staged: bool
    recipe: str | None = None
    companions: dict[str, Path] = field(default_factory=dict)
    """The tokenizer folder's other files, by name (staged beside the dataset when they are new)."""
    chat_template: str | None = None
    """The template chat domains are rendered with (set when there are chat domains)."""
    special_tokens: dict[str, str | None] = field(default_factory=dict)
    """bos_token and eos_token for the template, from the tokenizer folder's tokenizer_config.json."""

    @property
    def sha256(self) -> str:
        return _sha256(self.path)

    def discard(self) -> None:
        """Remove the staged files (the dataset's own tokenizer, when up to date, stays)."""
        if self.staged:
            self.path.unlink(missing_ok=True)
            for path in self.companions.values():
                path.unlink(missing_ok=True)

    def commit(self, output: Path) -> None:
        if not self.staged:
            return
        for name in TOKENIZER_COMPANIONS:  # the new tokenizer's companions replace the old ones
            if name in self.companions:
                os.replace(self.companions[name], output / name)
            else:
                (output / name).unlink(missing_ok=True)
        os.replace(self.path, output / TOKENIZER)
        self.path, self.staged = output / TOKENIZER, False
        recipe = output / TOKENIZER_RECIPE  # after the tokenizer: a kill in between leaves a recipe that retrains
        if self.recipe is None:
            recipe.unlink(missing_ok=True)
        else:
            recipe.write_text(self.recipe)


def _folder_eos_token(companions: dict[str, Path]) -> str | None:
    """The eos_token of a tokenizer folder's tokenizer_config.json (a string, or an AddedToken's content)."""
    if "tokenizer_config.json" not in companions:
        return None
    return token_text(json.loads(companions["tokenizer_config.json"].read_text()).get("eos_token"))


def _readable_tokenizer(path: Path):
    """The tokenizer at ``path``, or None when it cannot be read as one."""
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception:  # tokenizers raises its own exception type for a truncated or foreign file
        return None


def _choose_tokenizer(config: PrepareConfig, parts: list[_Part], output: Path) -> _TokenizerChoice:
    """Check (or train, staged) the tokenizer; nothing in ``output`` is replaced here."""
    target, staged = output / TOKENIZER, output / f".partial-{TOKENIZER}"
    eos_token = config.eos_token or "<|endoftext|>"
    if config.tokenizer is not None:
        given = Path(config.tokenizer).expanduser()
        source = given / TOKENIZER if given.is_dir() else given
        if not source.is_file():
            raise config.fail("tokenizer", config.tokenizer, "no such tokenizer folder or tokenizer.json: fix the path, "
                              "or unset it to train one")
        tokenizer = _readable_tokenizer(source)
        if tokenizer is None:
            raise config.fail("tokenizer", config.tokenizer, "cannot be read as a Hugging Face tokenizer.json (cut short, "
                              "or another file): give a complete tokenizer.json, or unset it to train one")
        companions = {name: given / name for name in TOKENIZER_COMPANIONS if given.is_dir() and (given / name).is_file()}
        eos_token = config.eos_token or _folder_eos_token(companions) or eos_token
        choice = _TokenizerChoice(target, tokenizer, -1, staged=False, companions=companions)
        unchanged = target.is_file() and _sha256(target) == _sha256(source) and all(
            (output / name).is_file() and _sha256(output / name) == _sha256(path) for name, path in companions.items())
        if not unchanged:
            shutil.copyfile(source, staged)
            for name, path in companions.items():
                shutil.copyfile(path, output / f".partial-{name}")
            choice.path, choice.staged = staged, True
            choice.companions = {name: output / f".partial-{name}" for name in companions}
    else:
        from lightning_motif.data.tokenizer_training import train_bpe_tokenizer

        if config.model_vocab_size is not None and config.vocab_size > config.model_vocab_size:
            raise config.fail("vocab_size", config.vocab_size,
                              f"larger than the model's vocabulary ({config.model_vocab_size}): lower vocab_size")
        recipe = json.dumps({"vocab": config.vocab_size, "eos": eos_token, "bytes": config.tokenizer_training_bytes,
                             "chat_template": config.chat_template,
                             "inputs": [_input_fingerprint(p.items) for p in parts if p.split == "train"]})
        recipe_path = output / TOKENIZER_RECIPE
        current = _readable_tokenizer(target) if target.is_file() else None
        if current is not None and recipe_path.is_file() and recipe_path.read_text() == recipe:
            _say(config, f"[prepare] tokenizer: up to date ({target})")
            choice = _TokenizerChoice(target, current, -1, staged=False, recipe=recipe)
        else:
            _say(config, f"[prepare] tokenizer: training a byte-level BPE of {config.vocab_size} tokens on the inputs")
            markers = CHATML_MARKERS if config.chat_template == "chatml" and any(p.chat for p in parts) else ()
            tokenizer = train_bpe_tokenizer(_training_texts(config, parts), config.vocab_size, eos_token, staged, markers)
            choice = _TokenizerChoice(staged, tokenizer, -1, staged=True, recipe=recipe)
    try:  # a refused tokenizer leaves nothing staged behind
        eos = choice.tokenizer.token_to_id(eos_token)
        if eos is None:
            raise config.fail("eos_token", eos_token,
                              "not in the tokenizer's vocabulary: set eos_token to one of its special tokens")
        vocab_size = choice.tokenizer.get_vocab_size()
        if config.model_vocab_size is not None and vocab_size > config.model_vocab_size:
            raise config.fail("model_vocab_size", config.model_vocab_size,
                              f"the tokenizer has {vocab_size} tokens: use a model with vocab_size >= {vocab_size}")
        choice.eos = eos
        if any(part.chat for part in parts):
            choice.chat_template, choice.special_tokens = _chat_template(config, choice)
    except BaseException:
        choice.discard()
        raise
    return choice


PROBE_CONVERSATION = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"}]


def _chat_template(config: PrepareConfig, choice: _TokenizerChoice) -> tuple[str, dict]:
    """The template of the chat domains and the special tokens it may print, checked on a probe conversation."""
    settings = choice.companions.get("tokenizer_config.json")
    folder_config = json.loads(settings.read_text()) if settings else {}
    special = {key: token_text(folder_config.get(key)) for key in ("bos_token", "eos_token")}
    folder = Path(config.tokenizer).expanduser() if config.tokenizer else None
    template = template_named(config.chat_template) or (
        folder_chat_template(folder_config, folder) if folder is not None and folder.is_dir() else None)
    if not isinstance(template, str) or not template:
        raise config.fail("chat_template", config.chat_template, "chat domains need a template: set chat_template: "
                          "chatml (built in), or give a tokenizer folder whose tokenizer_config.json has one")
    probe = TextTokenizer(choice.path)
    probe.special = special
    try:
        sample = ChatRenderer(probe, template)(PROBE_CONVERSATION)
    except Exception as error:  # Jinja syntax errors, templates that are not a concatenation of turns
        raise config.fail("chat_template", config.chat_template or "tokenizer_config.json",
                          f"cannot render a conversation ({error}): fix the template or use chat_template: chatml") from error
    if not sample.trained.any():
        raise config.fail("chat_template", config.chat_template or "tokenizer_config.json",
                          "renders no assistant tokens for a user/assistant exchange: fix the template")
    return template, special


def _part_files(folder: Path) -> dict[str, list]:
    """{file name: [bytes, SHA-256]} of a part's shard files (its record excluded)."""
    return {path.name: [path.stat().st_size, _sha256(path)]
            for path in sorted(folder.iterdir()) if path.is_file() and path.name != PART_RECORD}


def _intact_record(config: PrepareConfig, part: _Part, final: Path, fingerprint: dict) -> dict | None:
    """The part's record when it was written from the same inputs and its files still match what was written
    (sizes and checksums): a part cut short or altered since is rebuilt."""
    record_path = final / PART_RECORD
    if not record_path.is_file():
        return None
    record = json.loads(record_path.read_text())
    if record.get("fingerprint") != json.loads(json.dumps(fingerprint)):
        return None
    if record.get("files") != _part_files(final):
        _say(config, f"[prepare] {part.split}/{part.domain}: its files differ from what was written: rebuilding")
        return None
    return record


def _build_part(config: PrepareConfig, part: _Part, output: Path, tokenizer: _TokenizerChoice, fingerprint: dict) -> tuple[Path, dict]:
    """Tokenize ``part`` into a staging folder; the shards are a pure function of the inputs and the config: the
    workers tokenize the work items in parallel, one process writes them in input order."""
    partial = output / f".partial-{part.split}-{part.domain}"
    tokens_dir = output / f".partial-{part.split}-{part.domain}.tokens"
    for stale in (partial, tokens_dir):  # left by an interrupted run
        shutil.rmtree(stale, ignore_errors=True)
    tokens_dir.mkdir(parents=True)
    task = _TokenizeItem(str(tokenizer.path), tokenizer.eos, part, config.val_fraction, config.test_fraction,
                         config.seed, str(tokens_dir), tokenizer.chat_template, tokenizer.special_tokens)
    context = multiprocessing.get_context("fork" if sys.platform == "linux" and not torch.cuda.is_initialized() else "spawn")
    with context.Pool(min(config.num_workers, len(part.items)), initializer=_die_with_parent) as pool:
        results = list(tqdm(pool.imap(task, enumerate(part.items)), total=len(part.items), unit="item",
                            desc=f"[prepare] {part.split}/{part.domain}", disable=not config.verbose))
    # documents: one token stream (TokensLoader); conversations: one item each, and their lengths for packing
    layout = dict(chunk_bytes=CHUNK_TOKENS * 4) if part.chat else dict(chunk_size=CHUNK_TOKENS, item_loader=TokensLoader())
    optimize(fn=_documents_of, inputs=[r["path"] for r in results], output_dir=str(partial), num_workers=1,
             mode="overwrite", verbose=False, start_method=context.get_start_method(), **layout)
    if part.chat:
        lengths = [np.zeros(0, np.int64)]
        for result in results:
            with np.load(result["path"]) as data:
                lengths.append(np.diff(data["ends"], prepend=0))
        np.save(partial / LENGTHS, np.concatenate(lengths))
    shutil.rmtree(tokens_dir)
    index_path = partial / "index.json"  # litdata stamps the write time: replace it by the content's digest
    index = json.loads(index_path.read_text())
    index["updated_at"] = hashlib.sha256(json.dumps(index["chunks"]).encode()).hexdigest()[:16]
    index_path.write_text(json.dumps(index, sort_keys=True))
    skipped: Counter = Counter()
    for result in results:
        skipped.update(result["skipped"])
    record = {"fingerprint": fingerprint, "documents": sum(r["documents"] for r in results),
              "tokens": sum(r["tokens"] for r in results), "skipped": dict(sorted(skipped.items())),
              "replaced_bytes": sum(r["replaced_bytes"] for r in results), "files": _part_files(partial)}
    (partial / PART_RECORD).write_text(json.dumps(record, sort_keys=True))
    return partial, json.loads(json.dumps(record))


def _check_splits(config: PrepareConfig, records: dict) -> None:
    """Every domain has training tokens, and every held-out split asked for has documents in every domain (a
    validation loss over fewer domains is not comparable to one over all of them)."""
    for (split, domain), record in records.items():
        if record["documents"] > 0:
            continue
        source = config.domains[domain]
        if split == "train":
            raise config.fail(f"domains.{domain}.paths", source.paths, f"no usable documents (skipped: {record['skipped']})")
        if getattr(source, f"{split}_paths"):
            raise config.fail(f"domains.{domain}.{split}_paths", getattr(source, f"{split}_paths"), "no usable documents")
        raise config.fail(f"{split}_fraction", getattr(config, f"{split}_fraction"),
                          f"domain '{domain}' got no {split} documents: raise {split}_fraction or give domains.{domain}.{split}_paths")


def _commit(output: Path, tokenizer: _TokenizerChoice, staged: dict, manifest: Manifest) -> None:
    """Move the staged tokenizer and parts into place, then write the manifest; the old manifest goes first, so a
    kill in between leaves a dataset that says it is incomplete (and a re-run that completes it). A dataset
    already up to date is left as it is."""
    if not staged and not tokenizer.staged and (output / MANIFEST).is_file() and Manifest.load(output) == manifest:
        return
    (output / MANIFEST).unlink(missing_ok=True)
    tokenizer.commit(output)
    for (split, domain), partial in staged.items():
        final = output / split / domain
        shutil.rmtree(final, ignore_errors=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, final)
    tmp = output / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    os.replace(tmp, output / MANIFEST)


def prepare(config: PrepareConfig) -> Manifest:
    """Check every input (and the tokenizer) before anything is written, build the parts that are missing, stale
    or damaged in staging folders, and only then replace the dataset's files and write its manifest."""
    parts = plan_parts(config)
    output = Path(config.output_dir).expanduser()
    output.mkdir(parents=True, exist_ok=True)
    tokenizer = _choose_tokenizer(config, parts, output)
    staged: dict[tuple[str, str], Path] = {}
    try:
        tokenizer_sha = tokenizer.sha256
        records = {}
        for part in parts:
            fingerprint = {"inputs": _input_fingerprint(part.items), "text_field": part.text_field,
                           "tokenizer": tokenizer_sha, "eos": tokenizer.eos,
                           "chat_template": tokenizer.chat_template if part.chat else None,
                           "split_rule": [part.select_by_fraction, config.val_fraction, config.test_fraction, config.seed]}
            key = (part.split, part.domain)
            record = _intact_record(config, part, output / part.split / part.domain, fingerprint)
            if record is not None:
                _say(config, f"[prepare] {part.split}/{part.domain}: up to date, skipped")
            else:
                staged[key], record = _build_part(config, part, output, tokenizer, fingerprint)
            records[key] = record
        _check_splits(config, records)
        manifest = Manifest(
            vocab_size=tokenizer.tokenizer.get_vocab_size(), eos_token_id=tokenizer.eos, tokenizer_sha256=tokenizer_sha,
            tokens=_by_split(records, "tokens"), documents=_by_split(records, "documents"),
            skipped=_by_split(records, "skipped"), replaced_bytes=_by_split(records, "replaced_bytes"),
            tokenizer_files=sorted(tokenizer.companions),
            formats={domain: source.format for domain, source in config.domains.items()},
            source=json.dumps(asdict(config), sort_keys=True),
        )
        _commit(output, tokenizer, staged, manifest)
    finally:
        for partial in staged.values():  # left only when something failed before the commit
            shutil.rmtree(partial, ignore_errors=True)
        tokenizer.discard()
    for split, by_domain in manifest.tokens.items():
        for domain, tokens in by_domain.items():
            skipped, replaced = manifest.skipped[split][domain], manifest.replaced_bytes[split][domain]
            note = f", skipped {sum(skipped.values())} ({', '.join(f'{k}: {v}' for k, v in sorted(skipped.items()))})" if skipped else ""
            note += f", {replaced} invalid UTF-8 bytes replaced" if replaced else ""
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
