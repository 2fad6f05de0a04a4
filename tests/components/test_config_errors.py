"""Every bad component config raises ConfigError naming the field, before anything is built."""

import pytest

from components.attention import (
    DifferentialAttentionConfig,
    GroupedDifferentialAttentionConfig,
    GroupedQueryAttentionConfig,
)
from components.config_error import ConfigError
from components.mlp import PolyNormMLPConfig, SwiGLUConfig
from components.model import ModelConfig
from components.optim.schedules import WarmupStableDecayLR

CASES = [
    (lambda: GroupedQueryAttentionConfig(num_heads=6, num_kv_heads=4), "GroupedQueryAttentionConfig.num_kv_heads = 4"),
    (lambda: GroupedQueryAttentionConfig(num_heads=0, num_kv_heads=1), "GroupedQueryAttentionConfig.num_heads = 0"),
    (lambda: DifferentialAttentionConfig(num_heads=5, num_kv_heads=2), "DifferentialAttentionConfig.num_kv_heads = 2"),
    (lambda: GroupedDifferentialAttentionConfig(signal_noise_ratio=0), "GroupedDifferentialAttentionConfig.signal_noise_ratio = 0"),
    (lambda: GroupedDifferentialAttentionConfig(num_noise_heads=0), "GroupedDifferentialAttentionConfig.num_noise_heads = 0"),
    (lambda: GroupedDifferentialAttentionConfig(head_dim=15), "GroupedDifferentialAttentionConfig.head_dim = 15"),
    (lambda: GroupedQueryAttentionConfig(head_dim=7), "GroupedQueryAttentionConfig.head_dim = 7"),
    (lambda: SwiGLUConfig(intermediate_size=0), "SwiGLUConfig.intermediate_size = 0"),
    (lambda: PolyNormMLPConfig(eps=0.0), "PolyNormMLPConfig.eps = 0.0"),
    (lambda: ModelConfig(vocab_size=0, hidden_size=8, num_layers=1, attention=GroupedQueryAttentionConfig(),
                         mlp=SwiGLUConfig()), "ModelConfig.vocab_size = 0"),
    (lambda: ModelConfig(vocab_size=8, hidden_size=8, num_layers=1, rope_theta=-1.0,
                         attention=GroupedQueryAttentionConfig(), mlp=SwiGLUConfig()), "ModelConfig.rope_theta = -1.0"),
]


@pytest.mark.parametrize("build,field", CASES, ids=[field.split(" =")[0] for _, field in CASES])
def test_bad_component_config_names_the_field(build, field):
    with pytest.raises(ConfigError) as error:
        build()
    message = str(error.value)
    assert message.startswith(field + ":")
    assert "\n" not in message


def test_bad_schedule_names_the_field():
    import torch

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ConfigError, match=r"^WarmupStableDecayLR.warmup_steps = 20:"):
        WarmupStableDecayLR(optimizer, total_steps=10, warmup_steps=20)
    with pytest.raises(ConfigError, match=r"^WarmupStableDecayLR.decay_shape = 'cubic':"):
        WarmupStableDecayLR(optimizer, total_steps=10, decay_shape="cubic")
