"""Growth (HyperCloning width, LLaMA-Pro depth): the grown model computes its source's function.

Tolerance for the logit comparisons: 1e-12 absolute on logits of size ~1, in fp64 (models built under an fp64
default dtype and cast to fp64, so every reference path, lambda_init and the lambda vectors included, computes
in fp64). The grown model sums the same
products in another grouping (a source column split into copies, each divided by their number), which moves a
result by a few fp64 ulps (~1e-16 relative) per operation; a wrong copy, scale or lambda moves it by ~1e-2.
"""

import json
import subprocess
import sys

import pytest
import torch

from components.attention import (
    DifferentialAttentionConfig,
    GroupedDifferentialAttentionConfig,
    GroupedQueryAttentionConfig,
)
from components.config_error import ConfigError
from components.growth import GrowthConfig, check_growth, grow
from components.mlp import PolyNormMLPConfig, SwiGLUConfig
from components.model import ModelConfig, MotifForCausalLM
from lightning_motif.interop.weights import expected_tensors
from lightning_motif.presets import load_model_config
from motif_cli import REPO

VOCAB = 53
PRESETS = REPO / "experiments" / "presets"


@pytest.fixture(autouse=True)
def fp64():
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(default)


def diff(heads: int = 2, kv: int | None = None, **extra) -> DifferentialAttentionConfig:
    return DifferentialAttentionConfig(num_heads=heads, num_kv_heads=kv or heads, head_dim=4, kernel="reference",
                                       **extra)


def gda(groups: int = 2, ratio: int = 4) -> GroupedDifferentialAttentionConfig:
    return GroupedDifferentialAttentionConfig(num_noise_heads=groups, signal_noise_ratio=ratio, head_dim=4,
                                              kernel="reference")


def gqa(heads: int, kv: int) -> GroupedQueryAttentionConfig:
    return GroupedQueryAttentionConfig(num_heads=heads, num_kv_heads=kv, head_dim=4, kernel="reference")


def model_config(hidden: int, layers: int, attention, ffn: int, tied: bool = False,
                 swiglu: bool = False) -> ModelConfig:
    mlp = SwiGLUConfig(intermediate_size=ffn) if swiglu else \
        PolyNormMLPConfig(intermediate_size=ffn, kernel="reference")
    return ModelConfig(vocab_size=VOCAB, hidden_size=hidden, num_layers=layers, attention=attention, mlp=mlp,
                       max_position_embeddings=64, tie_word_embeddings=tied, norm_kernel="reference",
                       loss_kernel="reference")


def trained_like(config: ModelConfig, seed: int = 0) -> MotifForCausalLM:
    """A model with every parameter drawn away from its initial value (lambda vectors, norms and PolyNorm
    coefficients included), so that a tensor grown wrongly cannot hide behind an init of ones or zeros."""
    torch.manual_seed(seed)
    model = MotifForCausalLM(config).double()  # the lambda vectors too (fp32 by design otherwise)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


def grown_logits(source: ModelConfig, target: ModelConfig, growth: GrowthConfig) -> tuple[torch.Tensor, ...]:
    model = trained_like(source)
    grown = MotifForCausalLM(target).double()
    grown.load_state_dict(grow(model.state_dict(), source, target, growth), strict=True)
    tokens = torch.randint(0, VOCAB, (2, 13), generator=torch.Generator().manual_seed(1))
    return model(tokens), grown(tokens), grown


CASES = {  # name: (source, target)
    "width, differential -> GDA 4:1, tied -> untied": (model_config(16, 3, diff(), 24, tied=True),
                                                      model_config(32, 3, gda(2, 4), 48)),
    "width, heads doubled, tied -> tied": (model_config(16, 2, diff(), 24, tied=True),
                                          model_config(32, 2, diff(4), 72, tied=True)),
    "depth, differential 3 -> 5 layers": (model_config(16, 3, diff(), 24), model_config(16, 5, diff(), 24)),
    "depth and width, differential -> GDA": (model_config(16, 4, diff(), 24, tied=True),
                                             model_config(32, 5, gda(4, 2), 48)),
    "GDA -> GDA, groups and ratio doubled": (model_config(16, 2, gda(1, 2), 24), model_config(32, 3, gda(2, 4), 48)),
    "differential with shared keys, depth + width": (model_config(16, 2, diff(4, 2), 24),
                                                     model_config(32, 4, diff(8, 4), 48)),
    "GQA + SwiGLU, depth + width": (model_config(16, 2, gqa(4, 2), 24, swiglu=True),
                                    model_config(32, 3, gqa(8, 4), 48, swiglu=True)),
    "lambda_init schedule changed": (model_config(16, 2, diff(), 24),
                                     model_config(16, 2, diff(lambda_init_schedule="diff_transformer"), 24)),
}


@pytest.mark.parametrize("noise", [0.0, 0.05], ids=["exact copies", "with noise"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_grown_model_computes_its_sources_logits(case, noise):
    source, target = CASES[case]
    before, after, grown = grown_logits(source, target, GrowthConfig(noise=noise, seed=3))
    assert before.abs().max() > 0.5  # logits of a size where a wrong scale would show
    torch.testing.assert_close(after, before, atol=1e-12, rtol=0)
    if noise and target.hidden_size > source.hidden_size:  # the twin copies' weights differ, so they learn apart
        up = grown.model.layers[0].mlp.up_proj.weight
        assert (up[:, :source.hidden_size] - up[:, source.hidden_size:2 * source.hidden_size]).abs().min() > 0


def test_inserted_blocks_are_identities_and_sit_where_llama_pro_puts_them():
    source, target = model_config(16, 4, diff(), 24), model_config(16, 6, diff(), 24)
    assert [layer for layer, _ in check_growth(source, target, GrowthConfig()).layers] == [0, 1, 1, 2, 3, 3]
    state = grow(trained_like(source).state_dict(), source, target, GrowthConfig())
    for index in (2, 5):  # the copies
        assert not state[f"model.layers.{index}.self_attn.o_proj.weight"].any()
        assert not state[f"model.layers.{index}.mlp.down_proj.weight"].any()
        torch.testing.assert_close(state[f"model.layers.{index}.mlp.up_proj.weight"],
                                   state[f"model.layers.{index - 1}.mlp.up_proj.weight"])
    custom = check_growth(source, target, GrowthConfig(insert_after=[0, 0])).layers
    assert custom == [(0, False), (0, True), (0, True), (1, False), (2, False), (3, False)]


def test_a_moved_layer_keeps_its_lambda_and_output_scale():
    """Layer 1 moves to index 2: lambda_init grows (0.2 -> 0.356), so the second exponential takes the difference
    and the sub-norm weight takes (1 - 0.2) / (1 - 0.356)."""
    source, target = model_config(16, 2, diff(), 24), model_config(16, 3, diff(), 24)
    model = trained_like(source)
    grown = MotifForCausalLM(target).double()
    grown.load_state_dict(grow(model.state_dict(), source, target, GrowthConfig(insert_after=[0])))
    before, after = model.model.layers[1].self_attn, grown.model.layers[2].self_attn
    assert after.lambda_init > before.lambda_init
    torch.testing.assert_close(after.lambda_value(), before.lambda_value(), atol=1e-14, rtol=0)
    torch.testing.assert_close(after.subln.weight * (1 - after.lambda_init),
                               before.subln.weight * (1 - before.lambda_init), atol=1e-14, rtol=0)
    torch.testing.assert_close(after.lambda_q1, before.lambda_q1)  # the first branch is untouched


def test_the_released_2_6b_layout_grows_into_the_12_7b_preset_exactly():
    source, target = load_model_config(PRESETS / "motif-2.6b.yaml"), load_model_config(PRESETS / "motif-2-12.7b.yaml")
    torch.set_default_dtype(torch.float32)
    with torch.device("meta"):
        state = MotifForCausalLM(source).state_dict()
    grown = grow(state, source, target, GrowthConfig(noise=0.01))
    expected = {name: shape for name, (shape, _) in expected_tensors(target).items()}
    assert {name: tuple(t.shape) for name, t in grown.items()} == expected
    assert len(grown) == 643
    plan = check_growth(source, target, GrowthConfig())
    assert [i for i, (_, inserted) in enumerate(plan.layers) if inserted] == [4, 9, 14, 19, 24, 29, 34, 39]
    assert plan.heads.q[:5] == [0, 0, 0, 0, 1]  # group 0: 4 copies of head 0's signal query, then its noise query


@pytest.mark.parametrize("source,target,says", [
    (model_config(16, 2, gqa(4, 2), 24), model_config(32, 2, gda(2, 4), 48), "one noise head"),
    (model_config(16, 2, diff(4), 24), model_config(32, 2, gda(2, 4), 48), "groups (noise heads) 4 -> 2"),
    (model_config(16, 2, diff(), 24), model_config(24, 2, diff(3), 36), "hidden_size 16 -> 24"),
    (model_config(16, 3, diff(), 24), model_config(16, 2, diff(), 24), "only adds layers"),
    (model_config(16, 2, diff(), 24), model_config(16, 2, diff(), 24, swiglu=True), "MLP keeps its kind"),
    (model_config(16, 2, diff(), 24), model_config(32, 2, diff(4), 48, tied=True), "untied source"),
    (model_config(16, 2, gqa(4, 2), 24), model_config(32, 2, gqa(8, 2), 48), "num_kv_heads 2 -> 2"),
    (model_config(16, 2, gqa(4, 2), 24), model_config(32, 2, GroupedQueryAttentionConfig(
        num_heads=4, num_kv_heads=2, head_dim=8, kernel="reference"), 48), "head_dim 4 -> 8"),
], ids=["gqa to gda", "fewer groups than heads", "hidden not a multiple", "fewer layers", "mlp kind",
        "untied to tied", "kv heads not grown", "head_dim"])
def test_an_unreachable_target_is_refused_in_one_line(source, target, says):
    with pytest.raises(ConfigError, match="^GrowthConfig.target = ") as error:
        check_growth(source, target, GrowthConfig())
    assert says in str(error.value) and "\n" not in str(error.value)


def test_insert_after_must_name_one_source_layer_per_new_layer():
    source, target = model_config(16, 2, diff(), 24), model_config(16, 4, diff(), 24)
    with pytest.raises(ConfigError, match=r"^GrowthConfig.insert_after = \[0\]: name 2 source layers \(0 to 1\)"):
        check_growth(source, target, GrowthConfig(insert_after=[0]))


def test_qk_clip_and_parallel_muon_train_the_grown_model_from_its_first_step():
    """Two FSDP2 ranks (gloo) against one process, each on the same batch: the sharded model's losses and
    weights after three MuonClip steps (Parallel Muon, QK-clip clipping from the first step) equal the plain
    model's exactly (equal gradients average to themselves; gathers and the owner's Newton-Schulz are exact)."""
    result = subprocess.run([sys.executable, str(REPO / "tests" / "distributed" / "grown_model_worker.py"), "2"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("REPORT "))[7:])
    assert report["sharded"] and report["clipped_first_step"] > 0
    assert report["clipped_parallel"] == report["clipped_reference"]
    assert report["loss_difference"] == 0.0 and report["weight_difference"] == 0.0
    assert report["losses"][-1] < report["losses"][0]
