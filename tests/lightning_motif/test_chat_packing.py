"""Chat records rendered with an assistant-only loss mask (lightning_motif.data.chat) and packed into rows
(lightning_motif.data.packing): what is trained, what is skipped, and a packed batch through the model giving
exactly the losses of its conversations run one by one (fp32; tolerance as in tests/components/test_packing.py).
"""

import copy
import json
from collections import Counter

import lightning as L
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers

from components.attention import GroupedDifferentialAttentionConfig
from components.documents import PackedDocuments
from components.mlp import PolyNormMLPConfig
from components.model import ModelConfig, MotifForCausalLM
from lightning_motif.data.chat import CHATML, ChatRenderer, ChatSample, valid_messages
from lightning_motif.data.packing import pack
from lightning_motif.module import MotifLM
from lightning_motif.text import TextTokenizer

CONVERSATION = [
    {"role": "system", "content": "You add numbers."},
    {"role": "user", "content": "What is 2 + 3?"},
    {"role": "assistant", "content": "2 + 3 = 5."},
    {"role": "user", "content": "And 4 + 4?"},
    {"role": "assistant", "content": "4 + 4 = 8."},
]
LLAMA_LIKE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'assistant' %}{{ m['content'] }}{{ eos_token }}"
              "{% else %}[{{ m['role'] }}] {{ m['content'] }} [/{{ m['role'] }}]{% endif %}{% endfor %}")


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory):
    """A small byte-level BPE with ChatML's markers and bos/eos as special tokens, and a chat template of its own."""
    folder = tmp_path_factory.mktemp("tokenizer")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    special = ["<|im_start|>", "<|im_end|>", "<s>", "</s>", "<pad>"]
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator([m["content"] for m in CONVERSATION] * 20, trainer)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": LLAMA_LIKE, "bos_token": "<s>", "eos_token": "</s>"}))
    return folder


def trained_text(tokenizer: TextTokenizer, sample: ChatSample) -> str:
    return tokenizer.decode(sample.ids[sample.trained].tolist())


def test_chatml_trains_the_assistant_turns_and_their_end_markers_only(tokenizer_folder):
    tokenizer = TextTokenizer(tokenizer_folder)
    sample = ChatRenderer(tokenizer, CHATML)(CONVERSATION)
    assert tokenizer.decode(sample.ids.tolist()) == tokenizer.apply_chat_template(CONVERSATION, False, CHATML)
    assert trained_text(tokenizer, sample) == "2 + 3 = 5.<|im_end|>\n4 + 4 = 8.<|im_end|>\n"
    assert sample.ids.dtype.name == "int32" and sample.trained.shape == sample.ids.shape


def test_the_tokenizer_folders_template_is_used_by_default(tokenizer_folder):
    tokenizer = TextTokenizer(tokenizer_folder)
    sample = ChatRenderer(tokenizer)(CONVERSATION)
    assert tokenizer.decode(sample.ids.tolist()).startswith("<s>[system] You add numbers. [/system]")
    assert trained_text(tokenizer, sample) == "2 + 3 = 5.</s>4 + 4 = 8.</s>"


def test_a_template_that_is_not_a_concatenation_of_turns_is_refused(tokenizer_folder):
    reversed_turns = "{% for m in messages | reverse %}{{ m['content'] }}|{% endfor %}"
    with pytest.raises(ValueError, match="concatenation of its turns"):
        ChatRenderer(TextTokenizer(tokenizer_folder), reversed_turns)(CONVERSATION)


@pytest.mark.parametrize("messages,reason", [
    (None, "missing_field"),
    ("not a list", "invalid_messages"),
    ([], "invalid_messages"),
    ([{"role": "robot", "content": "hi"}], "invalid_messages"),
    ([{"role": "user", "content": 3}], "invalid_messages"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}], "no_assistant_turn"),
])
def test_broken_records_are_skipped_and_counted_by_reason(messages, reason):
    counts = Counter()
    assert valid_messages(messages, counts) is None
    assert counts == {reason: 1}


def test_rows_keep_samples_whole_pad_the_rest_and_cut_overlong_samples():
    def sample(n, first):
        return ChatSample(torch.arange(first, first + n).numpy().astype("int32"), (torch.arange(n) % 2 == 1).numpy())

    counts = Counter()
    rows = list(pack([sample(5, 10), sample(4, 20), sample(6, 30), sample(1, 40), sample(12, 50)], seq_len=8,
                     pad_id=0, counts=counts))
    assert counts == {"samples": 4, "too_short": 1, "truncated": 1}
    first = rows[0]  # samples of 5 and 4 tokens take 4 + 3 positions; one position of padding
    assert first.tokens.tolist() == [10, 11, 12, 13, 20, 21, 22, 0]
    assert first.documents.tolist() == [0, 0, 0, 0, 1, 1, 1, 2]
    assert first.targets.tolist() == [11, -100, 13, -100, 21, -100, 23, -100]  # odd tokens of each sample trained
    assert rows[1].tokens.tolist() == [30, 31, 32, 33, 34, 0, 0, 0]  # the 6-token sample did not fit
    assert rows[2].tokens.tolist() == list(range(50, 58))  # 12 tokens cut to 9: eight inputs, eight targets


def packed_conversations(tokenizer: TextTokenizer):
    render = ChatRenderer(tokenizer, CHATML)
    conversations = [CONVERSATION[:3], CONVERSATION, CONVERSATION[1:3], [CONVERSATION[1], CONVERSATION[4]]]
    samples = [render(c) for c in conversations]
    seq_len = max(len(s.ids) for s in samples) + 20
    rows = list(pack(samples, seq_len, pad_id=tokenizer.tokenizer.token_to_id("<pad>")))
    assert 1 < len(rows) < len(samples)  # some rows hold several conversations
    return samples, rows, seq_len


def tiny_config(vocab_size: int, seq_len: int) -> ModelConfig:
    return ModelConfig(
        vocab_size=vocab_size, hidden_size=32, num_layers=2, max_position_embeddings=seq_len,
        attention=GroupedDifferentialAttentionConfig(num_noise_heads=2, signal_noise_ratio=2, head_dim=8),
        mlp=PolyNormMLPConfig(intermediate_size=48))


def loss_alone(model: MotifForCausalLM, samples: list[ChatSample]) -> torch.Tensor:
    """Each conversation on its own: inputs, and targets trained on the assistant's tokens only."""
    return sum(model(torch.from_numpy(s.ids[:-1]).long()[None],
                     targets=torch.where(torch.from_numpy(s.trained[1:]), torch.from_numpy(s.ids[1:]).long(), -100)[None])
               for s in samples)


def test_a_packed_chat_batch_trains_like_its_conversations_one_by_one(tokenizer_folder):
    tokenizer = TextTokenizer(tokenizer_folder)
    samples, rows, seq_len = packed_conversations(tokenizer)
    torch.manual_seed(0)
    model = MotifForCausalLM(tiny_config(tokenizer.vocab_size, seq_len))
    alone = loss_alone(model, samples)
    packed = model(torch.stack([r.tokens for r in rows]), targets=torch.stack([r.targets for r in rows]),
                   documents=PackedDocuments(torch.stack([r.documents for r in rows])))
    torch.testing.assert_close(packed, alone, rtol=1e-5, atol=0)
    trained = sum(int(s.trained[1:].sum()) for s in samples)
    assert sum(int((r.targets != -100).sum()) for r in rows) == trained


class InitialNet(L.Callback):
    def on_train_start(self, trainer, pl_module):
        self.net = copy.deepcopy(pl_module.net)


def test_an_sft_step_of_the_module_follows_the_mean_over_assistant_tokens(tokenizer_folder):
    """One SGD step of MotifLM on packed rows (two micro-batches): the update is lr times the gradient of the summed
    assistant-token loss of the conversations alone, divided by their trained-token count."""
    tokenizer = TextTokenizer(tokenizer_folder)
    samples, rows, seq_len = packed_conversations(tokenizer)
    pad = torch.full((len(rows), 1), tokenizer.tokenizer.token_to_id("<pad>"))
    batch = {"tokens": torch.cat([torch.stack([r.tokens for r in rows]), pad], dim=1),
             "targets": torch.stack([r.targets for r in rows]),
             "documents": torch.stack([r.documents for r in rows]), "micro_batch_size": 1}
    lr = 0.5
    module = MotifLM(tiny_config(tokenizer.vocab_size, seq_len), optimizer=lambda p: torch.optim.SGD(p, lr=lr),
                     gradient_clip_val=None)
    initial = InitialNet()
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[initial])
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader([batch], batch_size=None))

    trained = sum(int(s.trained[1:].sum()) for s in samples)
    (loss_alone(initial.net, samples) / trained).backward()
    updated = dict(module.net.named_parameters())
    largest = max(p.grad.abs().max().item() for p in initial.net.parameters())
    for name, p in initial.net.named_parameters():
        torch.testing.assert_close((p - updated[name]).detach() / lr, p.grad, rtol=0, atol=1e-5 * largest,
                                   msg=lambda m: f"{name}: {m}")
