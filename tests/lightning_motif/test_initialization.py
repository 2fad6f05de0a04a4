"""Meta-device build and per-rank materialisation (``lightning_motif.initialization``): FSDP2 over 2 and 3 gloo
processes gives exactly the weights of one process from the same init_seed (tolerance zero: the same seeded
draws on full-size tensors, then each rank keeps its rows), with embeddings and [norm, lm_head] as FSDP units
of their own (one root unit when tied); and the weights depend on init_seed, not on what ran before."""

import json
import subprocess
import sys

import pytest
import torch

from components.attention import GroupedDifferentialAttentionConfig
from components.mlp import PolyNormMLPConfig
from components.model import ModelConfig, MotifForCausalLM
from lightning_motif.initialization import materialize
from motif_cli import REPO

WORKER = REPO / "tests" / "distributed" / "initialization_worker.py"


@pytest.mark.parametrize("world", [2, 3])
def test_sharded_materialisation_equals_one_process(world):
    result = subprocess.run([sys.executable, str(WORKER), str(world)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    reports = [json.loads(line[len("REPORT "):]) for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert reports == [
        {"tied": False, "names_equal": True, "max_difference": 0.0, "sharded": True, "separate_units": [True, True, True],
         "q_proj_std": 0.02, "layers_differ": True},
        {"tied": True, "names_equal": True, "max_difference": 0.0, "sharded": True, "separate_units": [False, False, False],
         "q_proj_std": 0.02, "layers_differ": True},
    ]


def test_weights_depend_on_init_seed_alone():
    config = ModelConfig(vocab_size=50, hidden_size=16, num_layers=2, max_position_embeddings=16,
                         attention=GroupedDifferentialAttentionConfig(num_noise_heads=1, signal_noise_ratio=2, head_dim=4),
                         mlp=PolyNormMLPConfig(intermediate_size=24))

    def weights(seed: int, draws_before: int) -> dict[str, torch.Tensor]:
        torch.rand(draws_before)  # whatever used the global generator before does not matter
        with torch.device("meta"):
            net = MotifForCausalLM(config)
        materialize(net, torch.device("cpu"), seed)
        return {**net.state_dict(), **dict(net.named_buffers())}

    first, again, other = weights(3, 0), weights(3, 1000), weights(4, 0)
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not torch.equal(first["lm_head.weight"], other["lm_head.weight"])
    lambda_init = first["model.layers.0.self_attn.lambda_init"]  # buffers initialised too (the released schedule)
    assert float(lambda_init) == pytest.approx(0.8 - 0.6 * 2.718281828 ** 0.3, abs=1e-6)
