"""Decoding with the key/value cache against full forwards, batches of different lengths against each prompt
alone, seeded sampling, and the cache layouts (each key and value head stored once).

fp32 throughout. A cached step computes the same sums as a full forward in another order (a masked attention
over the cache instead of a causal one over the sequence): within 1e-4 of the logit scale, where a wrong
position, mask or cached head moves logits by O(1)."""

import pytest
import torch

from components.attention import DifferentialAttentionConfig, GroupedDifferentialAttentionConfig, GroupedQueryAttentionConfig
from components.generation import SamplingConfig, generate, next_tokens
from components.mlp import PolyNormMLPConfig
from components.model import ModelConfig, MotifForCausalLM

ATTENTIONS = {
    "gda": GroupedDifferentialAttentionConfig(num_noise_heads=2, signal_noise_ratio=3, head_dim=8),
    "diff": DifferentialAttentionConfig(num_heads=2, num_kv_heads=1, head_dim=8),
    "gqa": GroupedQueryAttentionConfig(num_heads=4, num_kv_heads=2, head_dim=8),
}


def model_with(attention) -> MotifForCausalLM:
    torch.manual_seed(0)
    model = MotifForCausalLM(ModelConfig(vocab_size=97, hidden_size=32, num_layers=3, max_position_embeddings=40,
                                         attention=attention, mlp=PolyNormMLPConfig(intermediate_size=48)))
    with torch.no_grad():  # sharper than the initial weights, so that errors show
        for p in model.parameters():
            p.mul_(4.0 if p.ndim == 2 else 1.0)
    return model.eval()


def close(actual, expected):
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, atol=1e-4 * scale, rtol=0)


@pytest.mark.parametrize("attention", ATTENTIONS)
@torch.no_grad()
def test_cached_decoding_gives_the_full_forward_logits_at_every_step(attention):
    model = model_with(ATTENTIONS[attention])
    tokens = torch.randint(0, 97, (2, 7), generator=torch.Generator().manual_seed(1))
    state = model.decoding_state(2, 7 + 6)
    logits = model(tokens, step=state.step(torch.ones(2, 7, dtype=torch.bool)))[:, -1]
    for _ in range(6):
        close(logits, model(tokens)[:, -1])
        chosen = logits.argmax(-1)
        tokens = torch.cat([tokens, chosen[:, None]], dim=1)
        logits = model(chosen[:, None], step=state.step(torch.ones(2, 1, dtype=torch.bool)))[:, -1]
    close(logits, model(tokens)[:, -1])


@pytest.mark.parametrize("attention", ATTENTIONS)
@torch.no_grad()
def test_a_batch_of_different_lengths_decodes_like_each_prompt_alone(attention):
    model = model_with(ATTENTIONS[attention])
    prompts = [[5, 17, 3], [8, 1, 60, 2, 33, 70, 9, 9, 4], [11, 12, 13, 14, 15, 16]]
    sampling = SamplingConfig(max_new_tokens=8)
    together = generate(model, prompts, sampling)
    alone = [generate(model, [p], sampling).tokens[0] for p in prompts]
    assert together.tokens == alone
    state = model.decoding_state(3, 9)
    padded = torch.tensor([[0] * (9 - len(p)) + p for p in prompts])
    valid = torch.tensor([[False] * (9 - len(p)) + [True] * len(p) for p in prompts])
    logits = model(padded, step=state.step(valid))[:, -1]
    for row, prompt in enumerate(prompts):
        close(logits[row], model(torch.tensor([prompt]))[0, -1])


def test_seeded_sampling_is_reproducible_and_the_seed_matters():
    model = model_with(ATTENTIONS["gda"])
    prompts = [[5, 17, 3], [8, 1, 60, 2]]
    runs = [generate(model, prompts, SamplingConfig(max_new_tokens=12, temperature=1.5, top_k=20, top_p=0.95, seed=seed)).tokens
            for seed in (7, 7, 8)]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_top_k_and_top_p_keep_only_the_most_likely_tokens():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.9, -1.0]] * 200)
    generator = torch.Generator().manual_seed(0)
    assert set(next_tokens(logits, SamplingConfig(temperature=1.0, top_k=2), generator).tolist()) == {1, 3}
    assert set(next_tokens(logits, SamplingConfig(temperature=1.0, top_p=0.01), generator).tolist()) == {1}
    assert next_tokens(logits[:1], SamplingConfig(), None).tolist() == [1]


def test_end_of_sequence_and_stop_conditions_end_rows():
    model = model_with(ATTENTIONS["gda"])
    free = generate(model, [[5, 17, 3]], SamplingConfig(max_new_tokens=10))
    first = free.tokens[0][0]
    ended = generate(model, [[5, 17, 3]], SamplingConfig(max_new_tokens=10), eos_ids=(first,))
    assert ended.tokens == [[]] and ended.finished == ["eos"]
    stopped = generate(model, [[5, 17, 3]], SamplingConfig(max_new_tokens=10), stop=lambda row, tokens: len(tokens) == 3)
    assert stopped.tokens == [free.tokens[0][:3]] and stopped.finished == ["stop"]
    assert free.finished == ["length"] and len(free.tokens[0]) == 10


def test_each_key_and_value_head_is_cached_once():
    gda = model_with(ATTENTIONS["gda"]).decoding_state(2, 10).caches[0]
    assert gda.keys.shape == (2, 10, 4, 8) and gda.values.shape == (2, 10, 2, 16)  # 2G keys, G value pairs
    diff = model_with(ATTENTIONS["diff"]).decoding_state(2, 10).caches[0]
    assert diff.keys.shape == (2, 10, 2, 8) and diff.values.shape == (2, 10, 1, 16)
    gqa = model_with(ATTENTIONS["gqa"]).decoding_state(2, 10).caches[0]
    assert gqa.keys.shape == (2, 10, 2, 8) and gqa.values.shape == (2, 10, 2, 8)


def test_a_prompt_longer_than_the_positions_is_refused():
    model = model_with(ATTENTIONS["gda"])
    with pytest.raises(ValueError, match="sequence length 41 exceeds ModelConfig.max_position_embeddings = 40"):
        generate(model, [list(range(1, 30))], SamplingConfig(max_new_tokens=12))


@pytest.mark.parametrize("attention", ["gda", "gqa"])
def test_static_decode_buffers_give_the_same_tokens(attention):
    """The decode steps through fixed buffers (what a CUDA graph replays on a GPU) generate what plain calls do."""
    model = model_with(ATTENTIONS[attention])
    prompts = [[5, 17, 3], [8, 1, 60, 2, 33, 70]]
    sampling = SamplingConfig(max_new_tokens=10, temperature=1.0, top_k=30, seed=5)
    assert generate(model, prompts, sampling, static_decode=True).tokens == generate(model, prompts, sampling).tokens
