"""Run by tests/lightning_motif/test_initialization.py as its own process tree (gloo on CPU):

    python tests/distributed/initialization_worker.py WORLD_SIZE [WEIGHTS]

Every rank builds the model on the meta device, shards it with FSDP2 (per block, embeddings, [norm, lm_head],
root; with activation checkpointing, so module names carry the wrapper's prefix) and materialises its own
shards; the gathered weights must equal, bit for bit, a single-process materialisation of the same config
and init_seed. Sizes that do not divide by the world size (vocabulary 97, hidden 24 over 3 ranks) give uneven
shards. Rank 0 prints one JSON report line per layout (untied and tied embeddings).
"""

import json
import os
import socket
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from components.attention import GroupedDifferentialAttentionConfig  # noqa: E402
from components.mlp import PolyNormMLPConfig  # noqa: E402
from components.model import ModelConfig, MotifForCausalLM  # noqa: E402
from lightning_motif.initialization import load_weights, materialize  # noqa: E402
from lightning_motif.interop.weights import open_weights  # noqa: E402
from lightning_motif.parallelism import ParallelismConfig, apply_parallelism  # noqa: E402

INIT_SEED = 7


def config(tied: bool) -> ModelConfig:
    return ModelConfig(vocab_size=97, hidden_size=24, num_layers=3, max_position_embeddings=32, tie_word_embeddings=tied,
                       attention=GroupedDifferentialAttentionConfig(num_noise_heads=2, signal_noise_ratio=2, head_dim=4),
                       mlp=PolyNormMLPConfig(intermediate_size=40))


def full_state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer (the non-persistent lambda_init too), gathered whole."""
    tensors = {**dict(net.named_parameters()), **dict(net.named_buffers())}
    return {name.replace("_checkpoint_wrapped_module.", ""): (t.full_tensor() if isinstance(t, DTensor) else t).clone()
            for name, t in tensors.items()}


def single_process(tied: bool) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        net = MotifForCausalLM(config(tied))
    materialize(net, torch.device("cpu"), INIT_SEED)
    return full_state(net)


def run(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,))
    for tied in (False, True):
        with torch.device("meta"):
            net = MotifForCausalLM(config(tied))
        apply_parallelism(net, ParallelismConfig(activation_checkpointing=True, param_dtype=None), mesh)
        materialize(net, torch.device("cpu"), INIT_SEED)
        sharded = full_state(net)
        if rank == 0:
            reference = single_process(tied)
            units = [name for name, m in net.named_modules() if isinstance(m, FSDPModule)]
            report = {
                "tied": tied,
                "names_equal": sorted(sharded) == sorted(reference),
                "max_difference": max(float((sharded[n] - reference[n]).abs().max()) for n in reference),
                "sharded": all(isinstance(p, DTensor) for p in net.parameters()),
                "separate_units": ["model.embed_tokens" in units, "model.norm" in units, "lm_head" in units],
                "q_proj_std": round(float(reference["model.layers.0.self_attn.q_proj.weight"].std()), 2),
                "layers_differ": not torch.equal(reference["model.layers.0.self_attn.q_proj.weight"],
                                                 reference["model.layers.1.self_attn.q_proj.weight"]),
            }
            print("REPORT " + json.dumps(report), flush=True)
    if len(sys.argv) > 2:
        report_loaded_weights(rank, mesh, sys.argv[2])
    dist.destroy_process_group()


def report_loaded_weights(rank: int, mesh, folder: str) -> None:
    source = open_weights(folder)
    reads = []
    original_rows, original_tensor = source.rows, source.tensor
    source.rows = lambda name, start, stop: reads.append((name, stop - start)) or original_rows(name, start, stop)
    source.tensor = lambda name: reads.append((name, None)) or original_tensor(name)
    with torch.device("meta"):
        net = MotifForCausalLM(source.config)
    apply_parallelism(net, ParallelismConfig(param_dtype=None), mesh)
    materialize(net, torch.device("cpu"), INIT_SEED)
    load_weights(net, source)
    local_rows = {name: t.to_local().shape[0] for name, t in net.state_dict().items() if isinstance(t, DTensor)}
    own = all(count is not None and count == local_rows[name] for name, count in reads)
    gathered = full_state(net)
    all_own = [None] * dist.get_world_size()
    dist.all_gather_object(all_own, own)
    if rank == 0:
        stored = {name: original_tensor(name).float() for name in source.names()}
        report = {"loaded_from": folder, "max_difference": max(float((gathered[n] - t).abs().max()) for n, t in stored.items()),
                  "rows_read_per_rank": "own" if all(all_own) else "more"}
        print("REPORT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    world_size = int(sys.argv[1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    mp.spawn(run, args=(world_size, free_port), nprocs=world_size, join=True)
