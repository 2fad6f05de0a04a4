"""SFT data from chat records: ``motif prepare`` with ``format: chat`` (what is stored, what is refused before any
work) and SFTDataModule's packed stream (exact resume, ranks, epochs)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from litdata import StreamingDataset
from tokenizers import Tokenizer

from components.config_error import ConfigError
from lightning_motif.data.packing import pack_lengths
from lightning_motif.data.chat import decode_conversation
from lightning_motif.data.prepare import DomainSource, PrepareConfig, prepare
from lightning_motif.data.sft import SFTDataModule, SFTDataset

CONVERSATIONS = 120


def conversation(i: int) -> dict:
    turns = [{"role": "user", "content": f"What is {i} + {i % 7}?"},
             {"role": "assistant", "content": f"{i} + {i % 7} = {i + i % 7}."}]
    if i % 3 == 0:  # some longer, two-turn conversations
        turns += [{"role": "user", "content": "And doubled?"}, {"role": "assistant", "content": f"{2 * (i + i % 7)}."}]
    return {"messages": turns}


@pytest.fixture(scope="module")
def chat_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat")
    lines = [json.dumps(conversation(i)) for i in range(CONVERSATIONS)]
    lines += ["{not json", json.dumps({"messages": [{"role": "user", "content": "no answer"}]}),
              json.dumps({"messages": "not a list"}), json.dumps({"text": "no messages"})]
    (root / "chat.jsonl").write_text("\n".join(lines) + "\n")
    manifest = prepare(PrepareConfig(output_dir=str(root / "data"), vocab_size=512, chat_template="chatml",
                                     domains={"math": DomainSource(paths=[str(root / "chat.jsonl")], format="chat")},
                                     val_fraction=0.1, num_workers=1, verbose=False))
    return root, manifest


def test_conversations_are_stored_whole_with_their_assistant_masks(chat_dataset):
    root, manifest = chat_dataset
    assert manifest.formats == {"math": "chat"}
    assert manifest.documents["train"]["math"] + manifest.documents["val"]["math"] == CONVERSATIONS
    assert manifest.skipped["train"]["math"] == {"invalid_json": 1, "no_assistant_turn": 1, "invalid_messages": 1,
                                                 "missing_field": 1}
    part = root / "data" / "train" / "math"
    store, lengths = StreamingDataset(str(part)), np.load(part / "lengths.npy")
    assert len(store) == len(lengths) == manifest.documents["train"]["math"]
    assert [len(store[i]) for i in range(len(store))] == lengths.tolist()
    tokenizer = Tokenizer.from_file(str(root / "data" / "tokenizer.json"))
    ids, trained = decode_conversation(np.asarray(store[0]))
    text = tokenizer.decode(ids.tolist(), skip_special_tokens=False)
    source = next(c["messages"] for c in map(conversation, range(CONVERSATIONS))
                  if text.startswith(f"<|im_start|>user\n{c['messages'][0]['content']}<|im_end|>"))
    answers = "".join(m["content"] + "<|im_end|>\n" for m in source if m["role"] == "assistant")
    assert tokenizer.decode(ids[trained].tolist(), skip_special_tokens=False) == answers
    assert tokenizer.token_to_id("<|im_start|>") is not None  # ChatML's markers are single tokens of the BPE


@pytest.mark.parametrize("change,field", [
    (dict(chat_template=None), "chat_template"),                  # a trained BPE has no template of its own
    (dict(chat_template="{% for m in messages %}"), "chat_template"),  # not a template
])
def test_a_chat_domain_without_a_usable_template_is_refused_by_name(tmp_path, change, field):
    (tmp_path / "chat.jsonl").write_text("\n".join(json.dumps(conversation(i)) for i in range(20)) + "\n")
    config = dict(output_dir=str(tmp_path / "data"), vocab_size=300, num_workers=1, verbose=False,
                  domains={"math": DomainSource(paths=[str(tmp_path / "chat.jsonl")], format="chat")})
    with pytest.raises(ConfigError, match=f"^PrepareConfig.{field} = "):
        prepare(PrepareConfig(**{**config, **change}))
    assert not (tmp_path / "data" / "manifest.json").exists()


def files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (none when it does not exist), by path: its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("previous", [False, True], ids=["new-folder", "previous-dataset"])
def test_a_template_refused_after_training_leaves_the_output_folder_as_it_was(tmp_path, previous):
    """The BPE is trained (and staged beside the dataset) before the template is checked: the refusal removes it
    again, whether the folder was new or held a dataset (kept, byte for byte)."""
    (tmp_path / "chat.jsonl").write_text("\n".join(json.dumps(conversation(i)) for i in range(20)) + "\n")
    out = tmp_path / "data"
    config = dict(output_dir=str(out), vocab_size=300, val_fraction=0.0, num_workers=1, verbose=False,
                  domains={"math": DomainSource(paths=[str(tmp_path / "chat.jsonl")], format="chat")})
    if previous:
        prepare(PrepareConfig(**config, chat_template="chatml"))
    before = files(out)
    assert ("manifest.json" in before) == previous
    with pytest.raises(ConfigError, match=r"^PrepareConfig.chat_template = None: chat domains need a template"):
        prepare(PrepareConfig(**config, chat_template=None))  # a new recipe: the BPE is retrained, then refused
    assert files(out) == before


def test_a_text_file_in_a_chat_domain_is_refused_before_any_work(tmp_path):
    (tmp_path / "notes.txt").write_text("plain text")
    with pytest.raises(ConfigError, match=r"^PrepareConfig.domains.math.paths = .*\.jsonl or \.parquet"):
        prepare(PrepareConfig(output_dir=str(tmp_path / "data"), chat_template="chatml", verbose=False,
                              domains={"math": DomainSource(paths=[str(tmp_path / "notes.txt")], format="chat")}))


def stream(module: SFTDataModule, start: int, steps: int, rank: int = 0, world_size: int = 1) -> list[dict]:
    dataset = SFTDataset([module._dir("train", "math")], module.plan(), rank, world_size, start,
                         module.micro_batch_rows, module.pad_id)
    items = iter(dataset)
    return [next(items) for _ in range(steps)]


def test_the_stream_resumes_exactly_splits_over_ranks_and_reshuffles_each_epoch(chat_dataset):
    root, manifest = chat_dataset
    module = SFTDataModule(str(root / "data"), seq_len=64, rows_per_step=4, micro_batch_rows=2)
    plan = module.plan()
    per_epoch = len(plan.epoch_rows(0)) // 4
    whole = stream(module, 0, per_epoch + 2)
    for later, again in zip(whole[5:], stream(module, 5, per_epoch - 3)):  # a resumed run reads the same steps
        assert later["sft"] == again["sft"] and torch.equal(later["tokens"], again["tokens"])
    halves = [stream(module, 3, 1, rank, 2)[0] for rank in (0, 1)]
    assert torch.equal(torch.cat([h["tokens"] for h in halves]), whole[3]["tokens"])

    assert whole[per_epoch]["sft"] == {"step": per_epoch, "epoch": 1}
    first, second = (np.concatenate(plan.epoch_rows(e))[:, 1] for e in (0, 1))
    assert sorted(first) == sorted(second) == list(range(len(plan.flat_lengths)))  # every conversation, once
    assert not np.array_equal(first, second)
    batch = whole[0]
    assert batch["tokens"].shape == (4, 65) and batch["targets"].shape == batch["documents"].shape == (4, 64)
    assert (batch["targets"] != -100).any() and batch["micro_batch_size"] == 2
    assert len(pack_lengths(plan.flat_lengths.tolist(), 64)) == len(plan.epoch_rows(0))


def test_an_epoch_too_small_for_one_step_is_refused_by_name(chat_dataset):
    root, _ = chat_dataset
    module = SFTDataModule(str(root / "data"), seq_len=64, rows_per_step=10_000)
    with pytest.raises(ConfigError, match="^SFTDataModule.rows_per_step = 10000: an epoch packs into only"):
        stream(module, 0, 1)


def test_the_tokenizer_folders_own_template_renders_the_chat_domain(tmp_path):
    """No chat_template set: the tokenizer folder's template is used, here from chat_template.jinja (as newer
    transformers versions save it), with the folder's bos/eos tokens."""
    from tokenizers import decoders, models, pre_tokenizers, trainers

    folder = tmp_path / "tokenizer"
    folder.mkdir()
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer, tokenizer.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tokenizer.train_from_iterator([json.dumps(conversation(i)) for i in range(50)], trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
    (folder / "chat_template.jinja").write_text(
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'assistant' %}{{ m['content'] }}{{ eos_token }}"
        "{% else %}[{{ m['content'] }}]{% endif %}{% endfor %}")
    (tmp_path / "chat.jsonl").write_text("\n".join(json.dumps(conversation(i)) for i in range(30)) + "\n")
    prepare(PrepareConfig(output_dir=str(tmp_path / "data"), tokenizer=str(folder), val_fraction=0.0, verbose=False,
                          num_workers=1, domains={"math": DomainSource(paths=[str(tmp_path / "chat.jsonl")], format="chat")}))
    ids, trained = decode_conversation(np.asarray(StreamingDataset(str(tmp_path / "data" / "train" / "math"))[1]))
    assert tokenizer.decode(ids.tolist(), skip_special_tokens=False) == "<s>[What is 1 + 1?]1 + 1 = 2.</s>"
    assert tokenizer.decode(ids[trained].tolist(), skip_special_tokens=False) == "1 + 1 = 2.</s>"
