"""Run by tests/components/test_growth.py as its own process tree (gloo on CPU):

    python tests/distributed/grown_model_worker.py WORLD_SIZE

Every rank grows the same small differential model into a GDA model (HyperCloning width x2 with noise, LLaMA-Pro
depth 2 -> 3 layers) and builds it twice: sharded with FSDP2 as ``motif fit`` shards it (fp32 parameters), and
plain. Both take three MuonClip steps (Parallel Muon on the shards) with QK-clip's tau below the grown model's
first max logits, every rank on the same batch; rank 0 prints a JSON report.
"""

import json
import os
import socket
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from components.attention import DifferentialAttentionConfig, GroupedDifferentialAttentionConfig  # noqa: E402
from components.growth import GrowthConfig, grow  # noqa: E402
from components.mlp import PolyNormMLPConfig  # noqa: E402
from components.model import ModelConfig, MotifForCausalLM  # noqa: E402
from components.optim import MuonClip  # noqa: E402
from components.optim.param_groups import motif_param_groups  # noqa: E402
from lightning_motif.parallelism import ParallelismConfig, apply_parallelism  # noqa: E402

VOCAB, STEPS = 61, 3


def config(hidden: int, layers: int, attention, ffn: int, tied: bool) -> ModelConfig:
    return ModelConfig(vocab_size=VOCAB, hidden_size=hidden, num_layers=layers, attention=attention,
                       mlp=PolyNormMLPConfig(intermediate_size=ffn, kernel="reference"), max_position_embeddings=64,
                       tie_word_embeddings=tied, norm_kernel="reference", loss_kernel="reference")


SOURCE = config(16, 2, DifferentialAttentionConfig(num_heads=2, num_kv_heads=2, head_dim=4, kernel="reference"), 24,
                True)
TARGET = config(32, 3, GroupedDifferentialAttentionConfig(num_noise_heads=2, signal_noise_ratio=4, head_dim=4,
                                                          kernel="reference"), 48, False)


def grown_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    source = MotifForCausalLM(SOURCE)
    with torch.no_grad():
        for p in source.parameters():
            p.normal_(0, 0.5)  # large weights: max logits well above 1, so a tau below them clips
    return grow(source.state_dict(), SOURCE, TARGET, GrowthConfig(noise=0.05, seed=1))


def trained(model: MotifForCausalLM, tau: float, tokens: torch.Tensor) -> tuple[list[float], list[int]]:
    optimizer = MuonClip(motif_param_groups(model), lr=0.02, weight_decay=0.1, qk_clip_tau=tau)
    attentions = [layer.self_attn for layer in model.model.layers]
    optimizer.set_qk_clip_sources([a.qk_clip_target for a in attentions])
    losses, clipped = [], []
    for _ in range(STEPS):
        for a in attentions:
            a.reset_max_logits()
            a.track_max_logits = True
        loss = model(tokens[:, :-1], targets=tokens[:, 1:]) / tokens[:, 1:].numel()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        clipped.append(sum(optimizer.clipped_heads))
    return losses, clipped


def full(p: torch.Tensor) -> torch.Tensor:
    return (p.full_tensor() if isinstance(p, DTensor) else p).detach()


def run(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,))
    state = grown_state()
    tokens = torch.randint(0, VOCAB, (2, 17), generator=torch.Generator().manual_seed(2))
    reference, parallel = MotifForCausalLM(TARGET), MotifForCausalLM(TARGET)
    reference.load_state_dict(state)
    parallel.load_state_dict(state)
    apply_parallelism(parallel, ParallelismConfig(param_dtype=None), mesh)
    probe = reference.model.layers[0].self_attn
    probe.track_max_logits = True
    reference(tokens[:, :-1])
    probe.track_max_logits = False
    tau = float(probe.max_logits.median())  # about half the heads of the first layer above it
    reference_losses, reference_clipped = trained(reference, tau, tokens)
    parallel_losses, parallel_clipped = trained(parallel, tau, tokens)
    report = {
        "sharded": all(isinstance(p, DTensor) for p in parallel.parameters()),
        "clipped_first_step": reference_clipped[0], "clipped_parallel": parallel_clipped,
        "clipped_reference": reference_clipped,
        "loss_difference": max(abs(a - b) for a, b in zip(reference_losses, parallel_losses)),
        "weight_difference": max(float((full(p) - full(q)).abs().max())
                                 for p, q in zip(parallel.parameters(), reference.parameters(), strict=True)),
        "losses": reference_losses,
    }
    if rank == 0:
        print("REPORT " + json.dumps(report), flush=True)
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    world = int(sys.argv[1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(run, args=(world, port), nprocs=world)


if __name__ == "__main__":
    main()
