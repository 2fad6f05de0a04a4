"""The embedded default dataset: a small three-domain corpus built offline from the Python install.

Domains (so the curriculum has something to mix):
  code   the standard library's Python source
  prose  the standard library's docstrings and the language reference topics shipped in ``pydoc_data``
  math   generated arithmetic word problems with worked answers
A byte-level BPE tokenizer is trained on the training split with Hugging Face ``tokenizers``. The result is
cached (by default under ~/.cache/lightning-motif) and reused by later runs.
"""

import ast
import random
import sysconfig
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from lightning_motif.data.token_dataset import SPLITS, TOKENIZER, Manifest, build_atomically, write_token_shards

EOS = "<|endoftext|>"
HELD_OUT_EVERY = 20
"""Of every 20 documents of a domain, one goes to validation and one to test (5% each)."""
DOCUMENT_CHARS = 4000
"""Long texts (source files, reference topics) are cut at blank lines into documents of about this size."""
CORPUS_VERSION = 2


def _stdlib_sources(max_bytes: int) -> list[tuple[str, str]]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idlelib", "site-packages", "dist-packages", "lib2to3", "turtledemo"}
    sources, total = [], 0
    for path in sorted(stdlib.rglob("*.py")):
        if skip.intersection(path.relative_to(stdlib).parts):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        sources.append((str(path.relative_to(stdlib)), text))
        total += len(text)
        if total >= max_bytes:
            break
    return sources


def _docstrings(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)))]
    return [doc for node in nodes if (doc := ast.get_docstring(node)) and len(doc) > 80]


def code_documents(max_bytes: int) -> list[str]:
    return [text for _, text in _stdlib_sources(max_bytes)]


def prose_documents(max_bytes: int) -> list[str]:
    from pydoc_data.topics import topics

    documents = [topics[name] for name in sorted(topics)]
    total = sum(map(len, documents))
    for _, source in _stdlib_sources(4 * max_bytes):
        for doc in _docstrings(source):
            documents.append(doc)
            total += len(doc)
        if total >= max_bytes:
            break
    return documents


def _math_problem(rng: random.Random) -> str:
    a, b, c = rng.randint(2, 999), rng.randint(2, 999), rng.randint(2, 99)
    kind = rng.randrange(6)
    if kind == 0:
        return f"Q: What is {a} + {b}?\nA: {a} + {b} = {a + b}."
    if kind == 1:
        return f"Q: What is {a} - {b}?\nA: {a} - {b} = {a - b}."
    if kind == 2:
        return f"Q: What is {a} * {c}?\nA: {a} * {c} = {a * c}."
    if kind == 3:
        return f"Q: Compute ({a} + {b}) * {c}.\nA: {a} + {b} = {a + b}, and {a + b} * {c} = {(a + b) * c}."
    if kind == 4:
        return f"Q: Solve x + {a} = {a + b}.\nA: x = {a + b} - {a} = {b}."
    q, r = divmod(a * c + b % c, c)
    return f"Q: Divide {a * c + b % c} by {c}.\nA: {a * c + b % c} = {c} * {q} + {r}, so the quotient is {q} and the remainder {r}."


def math_documents(max_bytes: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    documents, total = [], 0
    while total < max_bytes:
        document = "\n\n".join(_math_problem(rng) for _ in range(rng.randint(4, 12)))
        documents.append(document)
        total += len(document)
    return documents


def _split_of(document_index: int) -> str:
    position = document_index % HELD_OUT_EVERY
    return {HELD_OUT_EVERY - 1: "val", HELD_OUT_EVERY - 2: "test"}.get(position, "train")


def split_into_documents(text: str, max_chars: int = DOCUMENT_CHARS) -> list[str]:
    """Cut ``text`` at blank lines into pieces of at most about ``max_chars`` (a longer paragraph stays whole)."""
    pieces, current = [], ""
    for paragraph in text.split("\n\n"):
        if current and len(current) + len(paragraph) > max_chars:
            pieces.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    return [*pieces, current] if current else pieces


def corpus_documents(bytes_per_domain: int) -> dict[str, list[str]]:
    texts = {
        "code": code_documents(bytes_per_domain),
        "prose": prose_documents(bytes_per_domain),
        "math": math_documents(bytes_per_domain // 2),
    }
    return {domain: [doc for text in docs for doc in split_into_documents(text)] for domain, docs in texts.items()}


def train_bpe_tokenizer(documents: list[str], vocab_size: int, path: Path) -> Tokenizer:
    """Byte-level BPE (every byte is representable, so no text is ever out of vocabulary) with an EOS token."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(documents, trainer=trainer)
    tokenizer.save(str(path))
    return tokenizer


def build_default_corpus(root: Path, vocab_size: int, bytes_per_domain: int, num_workers: int = 1) -> Manifest:
    """Build the embedded corpus into ``root`` unless a complete one of the same settings is already there."""
    root = Path(root)
    source = f"embedded-v{CORPUS_VERSION}:vocab={vocab_size}:bytes_per_domain={bytes_per_domain}"
    try:
        manifest = Manifest.load(root)
        if manifest.source == source:
            return manifest
    except FileNotFoundError:
        pass

    def build(tmp: Path) -> Manifest:
        corpus = corpus_documents(bytes_per_domain)
        splits = {split: {domain: [d for i, d in enumerate(docs) if _split_of(i) == split]
                          for domain, docs in corpus.items()} for split in SPLITS}
        empty = [f"{split}/{domain}" for split, by_domain in splits.items() for domain, docs in by_domain.items() if not docs]
        if empty:
            raise ValueError(f"bytes_per_domain = {bytes_per_domain} leaves no documents in {empty}: raise it")
        tokenizer = train_bpe_tokenizer([d for docs in splits["train"].values() for d in docs], vocab_size, tmp / TOKENIZER)
        eos = tokenizer.token_to_id(EOS)
        tokens = {
            split: {domain: write_token_shards(docs, tmp / TOKENIZER, eos, tmp / split / domain, num_workers)
                    for domain, docs in by_domain.items()}
            for split, by_domain in splits.items()
        }
        return Manifest(vocab_size=tokenizer.get_vocab_size(), eos_token_id=eos, tokens=tokens, source=source)

    return build_atomically(root, build)
