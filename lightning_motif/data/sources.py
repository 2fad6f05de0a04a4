"""Reading raw corpora: .txt files (one document each), .jsonl (one JSON object per line, text in a named
field) and .parquet (text in a named column), split into work items that processes can share.

Bad records are skipped and counted by reason (``invalid_utf8``, ``invalid_json``, ``missing_field``,
``empty``), so one broken line never stops a run and the manifest says how much was lost.
"""

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUPPORTED_SUFFIXES = (".txt", ".jsonl", ".parquet")
JSONL_RANGE_BYTES = 64 << 20
"""Large .jsonl files are read as several work items of about this many bytes, cut at line starts."""


@dataclass(frozen=True)
class WorkItem:
    """A piece of one input file: a byte range of a .jsonl file, one row group of a .parquet file, or a .txt file."""

    path: str
    name: str
    """The file's path relative to the configured input (its name, for a file given directly): documents are
    identified by it, so moving a corpus does not change which documents are held out."""
    start: int = 0
    stop: int = -1

    @property
    def kind(self) -> str:
        return Path(self.path).suffix[1:]


def list_input_files(path: Path) -> list[tuple[Path, str]]:
    """(file, name) of the supported files at ``path`` (a file, or a folder searched recursively), sorted; the
    name is relative to ``path``."""
    if path.is_file():
        return [(path, path.name)] if path.suffix in SUPPORTED_SUFFIXES else []
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUPPORTED_SUFFIXES)
    return [(file, str(file.relative_to(path))) for file in files]


def work_items(files: list[tuple[Path, str]]) -> list[WorkItem]:
    items = []
    for file, name in files:
        if file.suffix == ".jsonl":
            size = file.stat().st_size
            items += [WorkItem(str(file), name, s, min(s + JSONL_RANGE_BYTES, size))
                      for s in range(0, max(size, 1), JSONL_RANGE_BYTES)]
        elif file.suffix == ".parquet":
            import pyarrow.parquet as pq

            groups = pq.ParquetFile(file).num_row_groups
            items += [WorkItem(str(file), name, g, g + 1) for g in range(groups)]
        else:
            items.append(WorkItem(str(file), name))
    return items


def first_record_fields(file: Path) -> list[str] | None:
    """Field names of the first record of a .jsonl or .parquet file (None for .txt or an unreadable first line)."""
    if file.suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(file).schema_arrow.names)
    if file.suffix == ".jsonl":
        with file.open("rb") as handle:
            for line in handle:
                if line.strip():
                    try:
                        record = json.loads(line)
                    except (ValueError, UnicodeDecodeError):
                        return None
                    return list(record) if isinstance(record, dict) else []
    return None


def document_key(item: WorkItem, position: int) -> bytes:
    """A stable identity for a document: its file's name and its byte offset or row."""
    return f"{item.name}\x00{position}".encode()


def split_of(key: bytes, seed: int, val_fraction: float, test_fraction: float) -> str:
    """Assign a document to train, val or test by a keyed hash of its identity (stable across runs and workers)."""
    digest = hashlib.blake2b(key, digest_size=8, key=seed.to_bytes(8, "little")).digest()
    u = int.from_bytes(digest, "little") / 2**64
    return "val" if u < val_fraction else "test" if u < val_fraction + test_fraction else "train"


def read_documents(item: WorkItem, text_field: str, skipped: Counter) -> Iterator[tuple[int, str]]:
    """Yield (position, text) for each document of ``item``; count skipped records in ``skipped``."""
    if item.kind == "txt":
        try:
            text = Path(item.path).read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            skipped["invalid_utf8"] += 1
            return
        if text.strip():
            yield 0, text
        else:
            skipped["empty"] += 1
    elif item.kind == "jsonl":
        yield from _read_jsonl(item, text_field, skipped)
    else:
        yield from _read_parquet(item, text_field, skipped)


def _read_jsonl(item: WorkItem, text_field: str, skipped: Counter) -> Iterator[tuple[int, str]]:
    with open(item.path, "rb") as handle:
        if item.start > 0:  # a line belongs to the range holding its first byte
            handle.seek(item.start - 1)
            handle.readline()
        while (position := handle.tell()) < item.stop:
            line = handle.readline()
            if not line:
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError:
                skipped["invalid_utf8"] += 1
                continue
            except ValueError:
                skipped["invalid_json"] += 1
                continue
            text = record.get(text_field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                skipped["missing_field"] += 1
            elif not text.strip():
                skipped["empty"] += 1
            else:
                yield position, text


def _read_parquet(item: WorkItem, text_field: str, skipped: Counter) -> Iterator[tuple[int, str]]:
    import pyarrow.parquet as pq

    table = pq.ParquetFile(item.path).read_row_group(item.start)
    if text_field not in table.column_names:
        skipped["missing_field"] += table.num_rows
        return
    for row, text in enumerate(table.column(text_field).to_pylist()):
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                skipped["invalid_utf8"] += 1
                continue
        if not isinstance(text, str):
            skipped["missing_field"] += 1
        elif not text.strip():
            skipped["empty"] += 1
        else:
            yield item.start * (1 << 32) + row, text
