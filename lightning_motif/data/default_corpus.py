"""The embedded default dataset: a small three-domain corpus made offline from the Python install.

Domains (so the curriculum has something to mix):
  code   the standard library's Python source
  prose  the standard library's docstrings and the language reference topics shipped in ``pydoc_data``
  math   generated arithmetic word problems with worked answers
The texts are written as .jsonl files and go through ``motif prepare`` like any user corpus (a byte-level BPE
tokenizer is trained on them). The result is cached and reused by later runs.
"""

import ast
import json
import random
import sysconfig
from pathlib import Path

from lightning_motif.data.prepare import DomainSource, PrepareConfig, prepare
from lightning_motif.data.token_dataset import Manifest

DOCUMENT_CHARS = 4000
"""Long texts (source files, reference topics) are cut at blank lines into documents of about this size."""
HELD_OUT_FRACTION = 0.05
"""Of each domain's documents, 5% go to validation and 5% to test."""
CORPUS_VERSION = 3


def _stdlib_sources(max_bytes: int) -> list[str]:
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
        sources.append(text)
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


def prose_texts(max_bytes: int) -> list[str]:
    from pydoc_data.topics import topics

    texts = [topics[name] for name in sorted(topics)]
    total = sum(map(len, texts))
    for source in _stdlib_sources(4 * max_bytes):
        for doc in _docstrings(source):
            texts.append(doc)
            total += len(doc)
        if total >= max_bytes:
            break
    return texts


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
    n = a * c + b % c
    return f"Q: Divide {n} by {c}.\nA: {n} = {c} * {n // c} + {n % c}, so the quotient is {n // c} and the remainder {n % c}."


def math_texts(max_bytes: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts, total = [], 0
    while total < max_bytes:
        text = "\n\n".join(_math_problem(rng) for _ in range(rng.randint(4, 12)))
        texts.append(text)
        total += len(text)
    return texts


def split_into_documents(text: str, max_chars: int = DOCUMENT_CHARS) -> list[str]:
    """Cut ``text`` at blank lines into pieces of at most about ``max_chars`` (a longer paragraph stays whole)."""
    pieces, current = [], ""
    for paragraph in text.split("\n\n"):
        if current and len(current) + len(paragraph) > max_chars:
            pieces.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    return [*pieces, current] if current else pieces


def corpus_texts(bytes_per_domain: int) -> dict[str, list[str]]:
    texts = {
        "code": _stdlib_sources(bytes_per_domain),
        "prose": prose_texts(bytes_per_domain),
        "math": math_texts(bytes_per_domain // 2),
    }
    return {domain: [doc for text in docs for doc in split_into_documents(text)] for domain, docs in texts.items()}


def build_default_corpus(root: Path, vocab_size: int, bytes_per_domain: int, tokenizer: str | None = None) -> Manifest:
    """Write the embedded corpus as .jsonl under ``root/raw`` and prepare it into ``root`` (skipped when done),
    with a BPE of ``vocab_size`` trained on it or the given ``tokenizer`` (a Hugging Face folder or file)."""
    root = Path(root)
    raw = root / "raw"
    stamp = raw / f"complete-v{CORPUS_VERSION}-{bytes_per_domain}"
    if not stamp.exists():
        raw.mkdir(parents=True, exist_ok=True)
        for domain, documents in corpus_texts(bytes_per_domain).items():
            with (raw / f"{domain}.jsonl").open("w", encoding="utf-8") as handle:
                handle.writelines(json.dumps({"text": doc}) + "\n" for doc in documents)
        stamp.touch()
    config = PrepareConfig(
        output_dir=str(root), domains={d: DomainSource(paths=[str(raw / f"{d}.jsonl")]) for d in ("code", "math", "prose")},
        vocab_size=vocab_size, tokenizer=tokenizer, val_fraction=HELD_OUT_FRACTION, test_fraction=HELD_OUT_FRACTION,
        num_workers=1, verbose=False,
    )
    return prepare(config)
