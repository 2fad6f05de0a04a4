"""Packed rows (components.documents): several samples side by side in one row compute exactly what each sample
computes alone, for GDA, differential and GQA attention: loss, every gradient, and QK-clip's max logits.

Tolerances: fp32 throughout. Packed and alone runs multiply the same numbers; only the length of each softmax
row's masked tail (exactly zero after exp) and the order of the gradient sums over tokens differ, so results
agree to a few ulps of fp32 (1e-6 relative; for gradients relative to the largest gradient, since a sum over
tokens can cancel to near zero); 1e-5 leaves a margin on any x86-64. The isolation test needs no
tolerance: a sample's outputs do not depend on the values of another sample at all.
"""

import pytest
import torch

from components.attention import (
    DifferentialAttentionConfig,
    GroupedDifferentialAttentionConfig,
    GroupedQueryAttentionConfig,
)
from components.documents import PackedDocuments, segments
from components.mlp import PolyNormMLPConfig
from components.model import ModelConfig, MotifForCausalLM

ATTENTIONS = {
    "gqa": GroupedQueryAttentionConfig(num_heads=4, num_kv_heads=2, head_dim=8),
    "diff": DifferentialAttentionConfig(num_heads=2, num_kv_heads=1, head_dim=8),
    "gda": GroupedDifferentialAttentionConfig(num_noise_heads=2, signal_noise_ratio=2, head_dim=8),
}
LENGTHS = [[5, 7, 4], [9, 7]]  # two rows of 16 tokens; the second row's samples meet mid-row
VOCAB = 53


def model_for(attention: str) -> MotifForCausalLM:
    torch.manual_seed(0)
    model = MotifForCausalLM(ModelConfig(vocab_size=VOCAB, hidden_size=32, num_layers=2, max_position_embeddings=32,
                                         attention=ATTENTIONS[attention], mlp=PolyNormMLPConfig(intermediate_size=48)))
    for layer in model.model.layers:
        layer.self_attn.track_max_logits = True
    return model


def samples() -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Per row, per sample: input tokens and targets, with a masked prompt (-100) and no target after the end."""
    generator = torch.Generator().manual_seed(1)
    rows = []
    for row in LENGTHS:
        rows.append([])
        for length in row:
            tokens = torch.randint(0, VOCAB, (length + 1,), generator=generator)
            targets = tokens[1:].clone()
            targets[: length // 3] = -100
            rows[-1].append((tokens[:-1], targets))
    return rows


def max_logits(model: MotifForCausalLM) -> torch.Tensor:
    maxima = torch.stack([layer.self_attn.max_logits for layer in model.model.layers])
    for layer in model.model.layers:
        layer.self_attn.reset_max_logits()
    return maxima


def test_positions_restart_at_each_sample_and_segments_name_each_samples_range():
    documents = PackedDocuments.from_lengths([[2, 3, 1], [6]])
    assert documents.positions.tolist() == [[0, 1, 0, 1, 2, 0], [0, 1, 2, 3, 4, 5]]
    assert segments(documents.ids) == [[(0, 2), (2, 5), (5, 6)], [(0, 6)]]
    with pytest.raises(ValueError, match="lengths: rows sum to"):
        PackedDocuments.from_lengths([[2, 3], [4]])


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_a_packed_batch_equals_its_samples_run_alone(attention):
    model, rows = model_for(attention), samples()
    alone_loss = sum(model(tokens[None], targets=targets[None]) for row in rows for tokens, targets in row)
    alone_maxima = max_logits(model)
    alone_loss.backward()
    alone_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()

    tokens = torch.stack([torch.cat([t for t, _ in row]) for row in rows])
    targets = torch.stack([torch.cat([y for _, y in row]) for row in rows])
    packed_loss = model(tokens, targets=targets, documents=PackedDocuments.from_lengths(LENGTHS))
    packed_maxima = max_logits(model)
    packed_loss.backward()

    torch.testing.assert_close(packed_loss, alone_loss, rtol=1e-5, atol=0)
    torch.testing.assert_close(packed_maxima, alone_maxima, rtol=1e-5, atol=0)
    scale = max(g.abs().max().item() for g in alone_grads.values())  # sums over tokens may cancel to ~0
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, alone_grads[name], rtol=0, atol=1e-5 * scale, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_no_token_attends_across_a_sample_boundary(attention):
    """Changing the middle sample of a row changes nothing in the samples before and after it."""
    model = model_for(attention)
    documents = PackedDocuments.from_lengths([[5, 7, 4]])
    tokens = torch.randint(0, VOCAB, (1, 16), generator=torch.Generator().manual_seed(2))
    changed = tokens.clone()
    changed[0, 5:12] = (changed[0, 5:12] + 1) % VOCAB
    with torch.no_grad():
        before, after = model(tokens, documents=documents), model(changed, documents=documents)
    assert torch.equal(before[0, :5], after[0, :5]) and torch.equal(before[0, 12:], after[0, 12:])
    assert not torch.allclose(before[0, 5:12], after[0, 5:12])


def test_compiled_blocks_take_every_new_packing_without_compiling_again():
    """Blocks see only the sample-id tensor and the per-sample attention stays out of their graphs, so a new
    packing (new sample boundaries) reuses the compiled graphs; the outputs are the eager ones."""
    from torch._dynamo.utils import counters

    eager = model_for("gda")
    compiled = model_for("gda")
    torch._dynamo.reset()
    counters.clear()
    for layer in compiled.model.layers:
        layer.compile(backend="aot_eager")
    tokens = torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(3))
    graphs = []
    for lengths in ([[5, 7, 4], [9, 7]], [[3, 13], [16]], [[8, 8], [1, 2, 13]]):
        documents = PackedDocuments.from_lengths(lengths)
        for layer in [*compiled.model.layers, *eager.model.layers]:  # as every training step starts
            layer.self_attn.reset_max_logits()
        with torch.no_grad():
            torch.testing.assert_close(compiled(tokens, documents=documents), eager(tokens, documents=documents))
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[0] > 0 and graphs[1] == graphs[2] == graphs[0]
