"""Single-GPU optimizer step of the ~1B preset: MuonClip against torch AdamW (fused), and optimizer-state memory.

    python -m benchmarks.optimizer_step [--preset experiments/presets/motif-1b.yaml]

fp32 parameters and gradients on one GPU (random gradients; QK-clip off, since it acts only when logits
exceed tau). Checks first that one MuonClip step on a matrix equals the formula, then times
``optimizer.step()``.
"""

import argparse
import math

import torch
import yaml

from benchmarks.timing import median_ms
from components.attention import GroupedDifferentialAttentionConfig
from components.layers import count_parameters
from components.mlp import PolyNormMLPConfig
from components.model import ModelConfig, MotifForCausalLM
from components.optim import MuonClip
from components.optim.newton_schulz import newton_schulz, newton_schulz_flops
from components.optim.param_groups import motif_param_groups

COMPONENTS = {"GroupedDifferentialAttentionConfig": GroupedDifferentialAttentionConfig, "PolyNormMLPConfig": PolyNormMLPConfig}


def load_preset(path: str) -> ModelConfig:
    """Read a preset without jsonargparse (not installed on every GPU image)."""
    raw = yaml.safe_load(open(path))
    for key in ("attention", "mlp"):
        raw[key] = COMPONENTS[raw[key]["class_path"].rsplit(".", 1)[1]](**raw[key]["init_args"])
    return ModelConfig(**raw)


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="experiments/presets/motif-1b.yaml")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = load_preset(args.preset)
    with torch.device("cuda"):
        model = MotifForCausalLM(config)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}; {args.preset}: "
          f"{count_parameters(model) / 1e9:.2f}B parameters, fp32")

    name = "model.layers.0.mlp.up_proj.weight"
    w, g = model.get_parameter(name).detach().clone(), model.get_parameter(name).grad.clone()
    muon = MuonClip(motif_param_groups(model), lr=1e-3, weight_decay=0.1, qk_clip_tau=None)
    muon.step()
    expected = w * (1 - 1e-4) - 1e-3 * 0.2 * math.sqrt(max(w.shape)) * newton_schulz(g + 0.95 * g).float()
    # cuBLAS may pick another GEMM algorithm for the check's own Newton-Schulz: allow a bf16 rounding of O
    # (2^-8 of entries up to ~1) times lr * scale
    torch.testing.assert_close(model.get_parameter(name).detach(), expected, atol=1e-3 * 0.2 * math.sqrt(max(w.shape)) * 2**-7, rtol=0)
    print("check: one MuonClip step on", name, "matches the formula")

    muon_ms = median_ms(muon.step, repeats=10, warmup=2)
    muon_state = state_bytes(muon)
    del muon
    adamw = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, fused=True)
    adamw_ms = median_ms(adamw.step, repeats=10, warmup=2)
    adamw_state = state_bytes(adamw)
    hidden = [p for g in motif_param_groups(model) if g["use_muon"] for p in g["params"]]
    ns_flops = sum(newton_schulz_flops(*p.shape) for p in hidden)
    print("| optimizer | step ms (median of 10) | state GiB | state bytes / parameter |")
    print("|---|---|---|---|")
    n = count_parameters(model)
    print(f"| MuonClip (Muon on {len(hidden)} matrices, AdamW on the rest) | {muon_ms:.1f} | {muon_state / 2**30:.2f} | {muon_state / n:.1f} |")
    print(f"| torch AdamW (fused) | {adamw_ms:.1f} | {adamw_state / 2**30:.2f} | {adamw_state / n:.1f} |")
    print(f"MuonClip Newton-Schulz work: {ns_flops / 1e12:.2f} TFLOP per step -> {ns_flops / muon_ms / 1e9:.0f} TFLOP/s over the whole step")


if __name__ == "__main__":
    main()
