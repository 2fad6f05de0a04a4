"""``motif prepare`` on small corpora of every supported format, re-runs, interruptions and bad inputs."""

import json
from dataclasses import asdict
import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from litdata import StreamingDataset
from litdata.streaming.item_loader import TokensLoader
from tokenizers import Tokenizer

from components.config_error import ConfigError
from lightning_motif.data.prepare import DomainSource, PrepareConfig, prepare
from lightning_motif.data.token_dataset import MANIFEST, TOKENIZER, Manifest, verify_shards
from lightning_motif.data.tokenizer_training import train_bpe_tokenizer
from motif_cli import motif_command

WORDS = "the of and to in is was for on that with as by at from his her an it".split()


def sentence(i: int, n: int = 40) -> str:
    return " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(n)) + f" {i}."


@pytest.fixture
def corpus(tmp_path):
    """web: .jsonl with text under "content" plus broken lines; books: a folder of .txt (one with a Latin-1 byte,
    kept with the byte replaced); wiki: .parquet. Returns (root, the documents per domain)."""
    root = tmp_path / "raw"
    (root / "books").mkdir(parents=True)
    web = [sentence(i) for i in range(120)]
    with (root / "web.jsonl").open("wb") as f:
        for i, text in enumerate(web):
            f.write((json.dumps({"content": text, "id": i}) + "\n").encode())
            if i == 10:
                f.write(b"{not json\n")
                f.write(json.dumps({"title": "no content"}).encode() + b"\n")
                f.write(b'{"content": "\xff\xfe broken"}\n')
                f.write(json.dumps({"content": "   "}).encode() + b"\n")
    books = [sentence(1000 + i, 100) for i in range(40)]
    for i, text in enumerate(books):
        (root / "books" / f"{i:02d}.txt").write_text(text)
    (root / "books" / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    books.append("caf\ufffd")
    wiki = [sentence(2000 + i, 80) for i in range(60)]
    table = pa.table({"text": wiki, "n": list(range(60))})
    pq.write_table(table, root / "wiki.parquet", row_group_size=25)
    train_bpe_tokenizer(web, 300, "<|endoftext|>", root / "small-tokenizer.json")
    return root, {"web": web, "books": books, "wiki": wiki}


def config(root: Path, out: Path, **overrides) -> PrepareConfig:
    fields = dict(
        output_dir=str(out),
        domains={"web": DomainSource(paths=[str(root / "web.jsonl")], text_field="content"),
                 "books": DomainSource(paths=[str(root / "books")]),
                 "wiki": DomainSource(paths=[str(root / "wiki.parquet")])},
        vocab_size=400, val_fraction=0.1, num_workers=2, verbose=False,
    )
    fields.update(overrides)
    return PrepareConfig(**fields)


def read_all_tokens(directory: Path) -> list[int]:
    if not (directory / "index.json").exists() or not json.loads((directory / "index.json").read_text())["chunks"]:
        return []
    dataset = StreamingDataset(str(directory), item_loader=TokensLoader(block_size=1))
    return [int(dataset[i][0]) for i in range(len(dataset))]


def test_prepare_tokenizes_every_format_and_counts_exactly(corpus, tmp_path):
    root, documents = corpus
    out = tmp_path / "out"
    manifest = prepare(config(root, out))
    assert manifest.domains == ["books", "web", "wiki"]
    tokenizer = Tokenizer.from_file(str(out / TOKENIZER))
    assert manifest.vocab_size == tokenizer.get_vocab_size() <= 400
    eos = manifest.eos_token_id
    for domain, texts in documents.items():
        expected = sum(len(tokenizer.encode(t).ids) + 1 for t in texts)
        assert manifest.tokens["train"][domain] + manifest.tokens["val"][domain] == expected
        assert manifest.documents["train"][domain] + manifest.documents["val"][domain] == len(texts)
        assert 0 < manifest.documents["val"][domain] < len(texts) // 2
        train = read_all_tokens(out / "train" / domain)
        assert len(train) <= manifest.tokens["train"][domain] and train.count(eos) >= 1
    assert manifest.skipped["train"]["web"] == {"invalid_json": 1, "missing_field": 1, "invalid_utf8": 1, "empty": 1}
    assert manifest.skipped["train"]["books"] == {} and manifest.replaced_bytes["train"]["books"] == 1
    assert manifest.skipped["val"]["web"] == {}
    assert manifest.tokenizer_sha256 and Manifest.load(out) == manifest


def test_given_tokenizer_is_used_and_recorded(corpus, tmp_path):
    root, _ = corpus
    first = prepare(config(root, tmp_path / "a"))
    second = prepare(config(root, tmp_path / "b", tokenizer=str(tmp_path / "a" / TOKENIZER), vocab_size=50))
    assert second.tokenizer_sha256 == first.tokenizer_sha256 and second.tokens == first.tokens


def test_rerun_skips_finished_parts_and_rebuilds_changed_ones(corpus, tmp_path, capsys):
    root, _ = corpus
    out = tmp_path / "out"
    prepare(config(root, out))
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/*/index.json")}
    prepare(config(root, out, verbose=True))
    assert capsys.readouterr().out.count("up to date") == 1 + 6  # tokenizer + 3 domains x (train, val)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*/index.json")} == stamps
    time.sleep(0.01)
    (root / "books" / "00.txt").write_text(sentence(5000, 300))
    prepare(config(root, out, tokenizer=str(out / TOKENIZER)))
    changed = {p for p in out.glob("*/*/index.json") if p.stat().st_mtime_ns != stamps[p]}
    assert {p.parent.name for p in changed} == {"books"}


def processes_in_group(group: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def test_killed_prepare_takes_its_workers_along_leaves_no_complete_looking_part_and_resumes(tmp_path):
    """SIGKILL of the ``motif prepare`` process alone (as the OOM killer does) while its worker tokenizes: the
    worker dies with it, nothing looks complete, and a re-run finishes the dataset."""
    raw = tmp_path / "big.jsonl"
    with raw.open("w") as f:
        for i in range(60_000):
            f.write(json.dumps({"text": sentence(i, 60)}) + "\n")
    out = tmp_path / "out"
    settings = tmp_path / "prepare.yaml"
    settings.write_text(json.dumps({"output_dir": str(out), "domains": {"big": {"paths": [str(raw)]}},
                                    "vocab_size": 300, "num_workers": 1, "val_fraction": 0.01}))
    process = subprocess.Popen(motif_command() + ["prepare", "--config", str(settings)], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / ".partial-train-big.tokens").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    time.sleep(0.5)  # into the tokenizing of the part
    assert process.poll() is None, "prepare finished before it could be interrupted"
    assert len(processes_in_group(process.pid)) >= 2, "no worker process to orphan"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.time() + 2  # the parent-death signal acts at once; the tokenizing alone takes longer
    while processes_in_group(process.pid) and time.time() < deadline:
        time.sleep(0.05)
    assert processes_in_group(process.pid) == [], "a worker outlived motif prepare"
    assert not (out / MANIFEST).exists()
    assert not (out / "train" / "big").exists() or (out / "train" / "big" / ".motif-part.json").exists()
    result = subprocess.run(motif_command() + ["prepare", "--config", str(settings)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = Manifest.load(out)
    assert manifest.documents["train"]["big"] + manifest.documents["val"]["big"] == 60_000
    assert not list(out.glob(".partial-*"))


BAD = {
    "missing-path": (lambda root: dict(domains={"web": DomainSource(paths=[str(root / "nope.jsonl")])}),
                     "PrepareConfig.domains.web.paths = "),
    "no-supported-files": (lambda root: dict(domains={"web": DomainSource(paths=[str(root / "empty")])}),
                           "no .txt/.jsonl/.parquet files there"),
    "missing-field": (lambda root: dict(domains={"web": DomainSource(paths=[str(root / "web.jsonl")], text_field="text")}),
                      "PrepareConfig.domains.web.text_field = 'text': in none of the first 100 records of"),
    "vocab-larger-than-model": (lambda root: dict(vocab_size=400, model_vocab_size=256), "PrepareConfig.vocab_size = 400"),
    "eos-not-in-tokenizer": (lambda root: dict(tokenizer=str(root / "small-tokenizer.json"), eos_token="</s>"),
                             "PrepareConfig.eos_token = '</s>'"),
    "tokenizer-larger-than-model": (lambda root: dict(tokenizer=str(root / "small-tokenizer.json"), model_vocab_size=100),
                                    "PrepareConfig.model_vocab_size = 100: the tokenizer has 300 tokens"),
    "missing-tokenizer": (lambda root: dict(tokenizer=str(root / "nope.json")), "PrepareConfig.tokenizer = "),
    "bad-domain-name": (lambda root: dict(domains={"web/x": DomainSource(paths=[str(root / "books")])}), "PrepareConfig.domains = 'web/x'"),
    "bad-fraction": (lambda root: dict(val_fraction=0.7, test_fraction=0.4), "PrepareConfig.val_fraction = 0.7"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_inputs_fail_before_work_with_the_field_named(case, corpus, tmp_path):
    root, _ = corpus
    (root / "empty").mkdir()
    overrides, message = BAD[case]
    with pytest.raises(ConfigError) as error:
        prepare(config(root, tmp_path / "out", **overrides(root)))
    assert message in str(error.value)
    assert not (tmp_path / "out" / MANIFEST).exists() and not list((tmp_path / "out").glob("train/*"))


def test_corpus_with_no_usable_documents_is_an_error(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jsonl").write_bytes(b"{not json\n{\"text\": \"\\xff\"\n")
    with pytest.raises(ConfigError, match=r"no usable documents \(skipped: \{'invalid_json': 2\}\)"):
        prepare(PrepareConfig(output_dir=str(tmp_path / "out"), domains={"bad": DomainSource(paths=[str(tmp_path / "bad")])},
                              tokenizer=None, vocab_size=300, val_fraction=0.0, verbose=False))


def test_cli_reports_a_bad_input_on_one_line(tmp_path):
    result = subprocess.run(motif_command() + ["prepare", "--output_dir", str(tmp_path / "out"),
                                               "--domains", json.dumps({"web": {"paths": [str(tmp_path / "missing")]}})],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("motif: error: PrepareConfig.domains.web.paths = ")


def test_shards_are_the_same_bytes_whatever_the_workers(corpus, tmp_path):
    """The dataset is a pure function of the inputs and the config: 1, 2 and 4 workers write byte-identical files
    (the manifest differs only in the config it records). Several work items per domain (a .parquet of three row
    groups, a folder of 41 .txt files) so that the workers really share a part."""
    root, _ = corpus

    def files(out: Path) -> dict[str, bytes]:
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and p.name != MANIFEST}

    outputs = {}
    for workers in (1, 2, 4):
        manifest = prepare(config(root, tmp_path / f"out{workers}", num_workers=workers))
        outputs[workers] = (files(tmp_path / f"out{workers}"), {**asdict(manifest), "source": None})
    assert len(outputs[1][0]) > 10
    assert outputs[1] == outputs[2] == outputs[4]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: its bytes and modification time (a rewrite with equal bytes shows too)."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_a_bad_tokenizer_leaves_a_complete_dataset_untouched(damage, corpus, tmp_path):
    root, _ = corpus
    out = tmp_path / "out"
    prepare(config(root, out))
    before = snapshot(out)
    bad = tmp_path / "tokenizer.json"
    good = (out / TOKENIZER).read_bytes()
    bad.write_bytes(good[: len(good) // 2] if damage == "truncated" else b'{"model": "not a tokenizer"}')
    with pytest.raises(ConfigError, match=r"^PrepareConfig.tokenizer = .*cannot be read as a Hugging Face tokenizer.json"):
        prepare(config(root, out, tokenizer=str(bad)))
    assert snapshot(out) == before
    assert prepare(config(root, out)) == Manifest.load(out)  # the original config still finds everything up to date
    assert snapshot(out) == before


def test_a_shard_cut_short_is_rebuilt_by_the_next_prepare(corpus, tmp_path):
    root, _ = corpus
    out = tmp_path / "out"
    prepare(config(root, out))
    chunk = sorted((out / "train" / "books").glob("*.bin"))[0]
    whole = chunk.read_bytes()
    chunk.write_bytes(whole[:-100])
    with pytest.raises(ConfigError, match="cut short"):
        verify_shards(str(out / "train" / "books"))
    prepare(config(root, out))
    assert chunk.read_bytes() == whole
    flipped = bytearray(whole)
    flipped[10] ^= 1  # same size, other content: the checksum recorded at write time catches it
    chunk.write_bytes(bytes(flipped))
    prepare(config(root, out))
    assert chunk.read_bytes() == whole


def test_an_empty_validation_split_stops_prepare(corpus, tmp_path):
    root, _ = corpus
    (root / "one").mkdir()
    (root / "one" / "doc.txt").write_text(sentence(7))  # held out by the hash: train (val_fraction 0.1)
    domains = {**config(root, tmp_path / "out").domains, "one": DomainSource(paths=[str(root / "one")])}
    with pytest.raises(ConfigError, match=r"^PrepareConfig.val_fraction = 0.1: domain 'one' got no val documents"):
        prepare(config(root, tmp_path / "out", domains=domains))
    assert not (tmp_path / "out" / MANIFEST).exists() and not list((tmp_path / "out").glob(".partial-*"))


def test_a_record_without_the_text_field_is_skipped_wherever_it_is(tmp_path):
    """One rule for a record that lacks the field, first line or later: skipped and counted. Only a field that
    none of a file's first 100 records has is refused (a wrong text_field)."""
    raw = tmp_path / "notes.jsonl"
    lines = [{"title": "no text"}] + [{"text": sentence(i)} for i in range(50)] + [{"title": "no text either"}]
    raw.write_text("".join(json.dumps(line) + "\n" for line in lines))
    manifest = prepare(PrepareConfig(output_dir=str(tmp_path / "out"), domains={"notes": DomainSource(paths=[str(raw)])},
                                     vocab_size=300, val_fraction=0.0, num_workers=1, verbose=False))
    assert manifest.skipped["train"]["notes"] == {"missing_field": 2} and manifest.documents["train"]["notes"] == 50
