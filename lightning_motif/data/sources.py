"""Reading raw corpora: .txt files (one document each), .jsonl (one JSON object per line, text in a named
field) and .parquet (text in a named column), split into work items that processes can share.

Bad records are skipped and counted by reason (``invalid_utf8``, ``invalid_json``, ``missing_field``,
``empty``), so one broken line never stops a run and the manifest says how much was lost. A .txt file is one
whole document: bytes that are not UTF-8 are replaced (U+FFFD) and counted (``replaced_bytes``) rather than
dropping the document for them.
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
FIELD_PROBE_RECORDS = 100
"""A text field absent from all of a file's first records is a config mistake (refused); one missing later, or
in some of them, is a broken record (skipped and counted)."""
REPLACED_BYTES = "replaced_bytes"


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


def fields_of_first_records(file: Path, text_field: str) -> list[str] | None:
    """The field names seen in the first FIELD_PROBE_RECORDS records of a .jsonl file (the columns of a .parquet
    file) when ``text_field`` is in none of them; None when it is there, or for .txt, or when no record parses."""
    if file.suffix == ".parquet":
        import pyarrow.parquet as pq

        names = list(pq.ParquetFile(file).schema_arrow.names)
        return None if text_field in names else names
    if file.suffix != ".jsonl":
        return None
    seen: dict[str, None] = {}
    records = 0
    with file.open("rb") as handle:
        for line in handle:
            if records == FIELD_PROBE_RECORDS:
                break
            try:
                record = json.loads(line)
            except (ValueError, UnicodeDecodeError):
                continue
            if isinstance(record, dict):
                records += 1
                if text_field in record:
                    return None
                seen.update(dict.fromkeys(record))
    return list(seen) if seen else None


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
        text, replaced = decode_replacing(Path(item.path).read_bytes())
        if replaced:
            skipped[REPLACED_BYTES] += replaced
        if text.strip():
            yield 0, text
        else:
            skipped["empty"] += 1
    else:
        fields = _jsonl_fields if item.kind == "jsonl" else _parquet_fields
        yield from _texts(fields(item, text_field, skipped), skipped)


def _jsonl_fields(item: WorkItem, field: str, skipped: Counter) -> Iterator[tuple[int, object]]:
    """(byte offset, value of ``field`` or None) of each parseable record in ``item``'s byte range; lines that are
    not UTF-8 or not JSON are counted in ``skipped``."""
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
            yield position, record.get(field) if isinstance(record, dict) else None


def read_conversations(item: WorkItem, messages_field: str, skipped: Counter) -> Iterator[tuple[int, list[dict]]]:
    """Yield (position, messages) for each valid chat record of a .jsonl or .parquet ``item``; count the others in
    ``skipped`` (``invalid_utf8``, ``invalid_json``, and the reasons of ``chat.valid_messages``)."""
    from lightning_motif.data.chat import valid_messages

    fields = _jsonl_fields if item.kind == "jsonl" else _parquet_fields
    for position, value in fields(item, messages_field, skipped):
        messages = valid_messages(value, skipped)
        if messages is not None:
            yield position, messages


def _parquet_fields(item: WorkItem, field: str, skipped: Counter) -> Iterator[tuple[int, object]]:
    """(position, value of ``field`` or None) of each row of ``item``'s row group."""
    import pyarrow.parquet as pq

    table = pq.ParquetFile(item.path).read_row_group(item.start)
    column = table.column(field).to_pylist() if field in table.column_names else [None] * table.num_rows
    for row, value in enumerate(column):
        yield item.start * (1 << 32) + row, value


def _texts(fields: Iterator[tuple[int, object]], skipped: Counter) -> Iterator[tuple[int, str]]:
    """The non-empty text values of a record reader's (position, value) pairs; a bytes value (a parquet binary
    column) is decoded as UTF-8. Counts ``invalid_utf8``, ``missing_field`` and ``empty`` in ``skipped``."""
    for position, text in fields:
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
            yield position, text


def decode_replacing(data: bytes) -> tuple[str, int]:
    """UTF-8 text with each undecodable byte run replaced by U+FFFD, and how many bytes were replaced: what the
    text keeps re-encodes to the same bytes, and each inserted U+FFFD to three."""
    text = data.decode("utf-8", errors="replace")
    inserted = text.count("\ufffd") - data.count("\ufffd".encode())
    return text, len(data) - (len(text.encode("utf-8")) - 3 * inserted)
