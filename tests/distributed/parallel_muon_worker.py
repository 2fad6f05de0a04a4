"""Run by tests/components/test_parallel_muon.py as its own process tree (gloo on CPU):

    python tests/distributed/parallel_muon_worker.py WORLD_SIZE CHECKPOINT_DIR

Every rank builds the same small model twice: one copy sharded with FSDP2 (fully_shard, rows split over the
ranks, several row counts not divisible by the world size) and one plain copy. Both take MuonClip steps on
the same gradients; rank 0 prints a JSON report of the largest differences. Then the sharded optimizer is saved
and loaded through torch.distributed.checkpoint and must continue exactly as the original.
"""

import json
import os
import socket
import sys

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.multiprocessing as mp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, Shard, distribute_tensor, init_device_mesh

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from components.optim import MuonClip  # noqa: E402

SHAPES = [(5, 8), (13, 7), (3, 3), (17, 4), (8, 33), (6, 6), (1, 9), (40, 24), (7, 50)]


class Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.ModuleList(nn.Linear(cols, rows, bias=False) for rows, cols in SHAPES)
        self.norm = nn.LayerNorm(11)


def groups(model: Model) -> list[dict]:
    return [{"params": [layer.weight for layer in model.layers], "use_muon": True},
            {"params": list(model.norm.parameters()), "use_muon": False, "weight_decay": 0.0}]


def gradients(step: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(100 + step)
    return {name: torch.randn(shape, generator=generator)
            for name, shape in [(f"layers.{i}.weight", s) for i, s in enumerate(SHAPES)] + [("norm.weight", (11,)), ("norm.bias", (11,))]}


def set_gradients(model: nn.Module, step: int) -> None:
    full = gradients(step)
    for name, p in model.named_parameters():
        g = full[name]
        p.grad = distribute_tensor(g, p.device_mesh, p.placements) if isinstance(p, DTensor) else g.clone()


def full(p: torch.Tensor) -> torch.Tensor:
    return (p.full_tensor() if isinstance(p, DTensor) else p).detach()


def max_difference(a: nn.Module, b: nn.Module) -> float:
    return max(float((full(p) - full(q)).abs().max()) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def sharded_model(mesh) -> Model:
    model = Model()
    for layer in model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def run(rank: int, world: int, port: int, checkpoint_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,))
    settings = dict(lr=0.02, weight_decay=0.1, qk_clip_tau=None, parallel_chunk_size=4)
    reference = Model()
    reference_optimizer = MuonClip(groups(reference), **settings)
    parallel = sharded_model(mesh)
    parallel_optimizer = MuonClip(groups(parallel), **settings)
    gathered = sharded_model(mesh)
    gathered_optimizer = MuonClip(groups(gathered), parallel_muon=False, **settings)
    report = {"sharded": all(isinstance(layer.weight, DTensor) and layer.weight.placements == (Shard(0),)
                             for layer in parallel.layers)}
    for step in range(3):
        for model, optimizer in ((reference, reference_optimizer), (parallel, parallel_optimizer), (gathered, gathered_optimizer)):
            set_gradients(model, step)
            optimizer.step()
    report["parallel_vs_single_process"] = max_difference(parallel, reference)
    report["gather_all_vs_single_process"] = max_difference(gathered, reference)
    momentum = parallel_optimizer.state[parallel.layers[1].weight]["momentum_buffer"]
    report["momentum_sharded_like_param"] = isinstance(momentum, DTensor) and momentum.placements == (Shard(0),)

    model_state, optimizer_state = get_state_dict(parallel, parallel_optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=checkpoint_dir)
    restored = sharded_model(mesh)
    restored_optimizer = MuonClip(groups(restored), **settings)
    for p in restored.parameters():  # give the fresh optimizer state to load into
        p.grad = torch.zeros_like(p)
    restored_optimizer.step()
    restored_optimizer.zero_grad()
    model_state, optimizer_state = get_state_dict(restored, restored_optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=checkpoint_dir)
    set_state_dict(restored, restored_optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    for step in range(3, 5):
        for model, optimizer in ((parallel, parallel_optimizer), (restored, restored_optimizer)):
            set_gradients(model, step)
            optimizer.step()
    report["restored_vs_continued"] = max_difference(restored, parallel)
    if rank == 0:
        print("REPORT " + json.dumps(report), flush=True)
    dist.barrier()
    # Leave without tearing gloo down: after torch.distributed.checkpoint has run, destroying the process
    # group sometimes aborts a CPU process in gloo's teardown ("terminate called without an active exception"),
    # which has nothing to do with what is checked here.
    os._exit(0)


def main() -> None:
    world, checkpoint_dir = int(sys.argv[1]), sys.argv[2]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(run, args=(world, port, checkpoint_dir), nprocs=world)


if __name__ == "__main__":
    main()
