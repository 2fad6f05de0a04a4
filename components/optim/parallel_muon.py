"""Parallel Muon (Motif-2-12.7B report, arXiv 2511.07464, the optimizer section): orthogonalise FSDP2-sharded matrices without every rank gathering all of them.

Each full matrix gets one owner rank (matrices sorted by Newton-Schulz FLOPs, dealt round-robin, so the work is
balanced). Per chunk of ``chunk_size`` matrices, one all-to-all sends every rank's row shard of each matrix
to its owner, the owner runs Newton-Schulz on the matrices it owns, and a second all-to-all sends each rank
its rows of the results. Chunks are pipelined: while chunk c is orthogonalised, the gather of chunk c + 1 and
the scatter of chunk c - 1 are in flight. Shards travel in bf16, the precision Newton-Schulz runs in, so the
result is the same as orthogonalising the full matrix in one process.
"""

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor, Shard

from components.optim.newton_schulz import newton_schulz_flops


def shard_rows(rows: int, world: int) -> list[int]:
    """Rows held by each rank when ``rows`` are split like DTensor Shard(0) (torch.chunk: ceil-sized, the last
    ranks possibly empty)."""
    full = -(-rows // world)
    return [max(0, min(rows, (r + 1) * full) - r * full) for r in range(world)]


def is_row_sharded(tensor: torch.Tensor) -> bool:
    return isinstance(tensor, DTensor) and tensor.device_mesh.ndim == 1 and tuple(tensor.placements) == (Shard(0),)


def owners(shapes: list[torch.Size], world: int) -> list[int]:
    """Owner rank of each matrix: sorted by Newton-Schulz FLOPs (largest first), dealt round-robin."""
    order = sorted(range(len(shapes)), key=lambda i: -newton_schulz_flops(*shapes[i]))
    owner = [0] * len(shapes)
    for position, index in enumerate(order):
        owner[index] = position % world
    return owner


class _Chunk:
    """One chunk's matrices and the bookkeeping of its two all-to-alls, from this rank's point of view."""

    def __init__(self, indices: list[int], updates: list[DTensor], owner: list[int], rank: int, world: int) -> None:
        self.indices = indices
        self.rank, self.world = rank, world
        self.shapes = {i: updates[i].shape for i in indices}
        self.rows = {i: shard_rows(updates[i].shape[0], world) for i in indices}
        self.owner = owner
        self.mine = [i for i in indices if owner[i] == rank]

    def _numel(self, i: int, r: int) -> int:
        return self.rows[i][r] * self.shapes[i][1]

    def start_gather(self, updates: list[DTensor], group) -> tuple:
        send = [updates[i].to_local().bfloat16().flatten() for r in range(self.world) for i in self.indices if self.owner[i] == r]
        in_splits = [sum(self._numel(i, self.rank) for i in self.indices if self.owner[i] == r) for r in range(self.world)]
        out_splits = [sum(self._numel(i, s) for i in self.mine) for s in range(self.world)]
        send_buffer = torch.cat(send) if send else torch.empty(0, dtype=torch.bfloat16, device=updates[self.indices[0]].device)
        receive = send_buffer.new_empty(sum(out_splits))
        work = dist.all_to_all_single(receive, send_buffer, out_splits, in_splits, group=group, async_op=True)
        return work, receive, out_splits

    def assemble(self, receive: torch.Tensor, out_splits: list[int]) -> dict[int, torch.Tensor]:
        """Full matrices this rank owns, from the row shards received from every rank (in rank order)."""
        blocks: dict[int, list[torch.Tensor]] = {i: [] for i in self.mine}
        for source, piece in enumerate(receive.split(out_splits)):
            offset = 0
            for i in self.mine:
                n = self._numel(i, source)
                blocks[i].append(piece[offset:offset + n].view(self.rows[i][source], self.shapes[i][1]))
                offset += n
        return {i: torch.cat(blocks[i]) for i in self.mine}

    def start_scatter(self, results: dict[int, torch.Tensor], group, device) -> tuple:
        send = [results[i][sum(self.rows[i][:r]):sum(self.rows[i][:r + 1])].flatten() for r in range(self.world) for i in self.mine]
        in_splits = [sum(self._numel(i, r) for i in self.mine) for r in range(self.world)]
        out_splits = [sum(self._numel(i, self.rank) for i in self.indices if self.owner[i] == s) for s in range(self.world)]
        send_buffer = torch.cat(send) if send else torch.empty(0, dtype=torch.bfloat16, device=device)
        receive = send_buffer.new_empty(sum(out_splits))
        work = dist.all_to_all_single(receive, send_buffer, out_splits, in_splits, group=group, async_op=True)
        return work, receive, out_splits

    def local_results(self, receive: torch.Tensor, out_splits: list[int]) -> dict[int, torch.Tensor]:
        """This rank's rows of every matrix of the chunk, from the pieces their owners sent."""
        results, pieces = {}, receive.split(out_splits)
        offsets = [0] * self.world
        for i in self.indices:
            source = self.owner[i]
            n = self._numel(i, self.rank)
            results[i] = pieces[source][offsets[source]:offsets[source] + n].view(self.rows[i][self.rank], self.shapes[i][1])
            offsets[source] += n
        return results


def orthogonalize_row_sharded(
    updates: list[DTensor], orthogonalize: Callable[[list[torch.Tensor]], list[torch.Tensor]], chunk_size: int = 32,
) -> list[torch.Tensor]:
    """``orthogonalize`` (a batch of full matrices in, their results out) applied to the full matrix of each
    row-sharded DTensor (all on one 1-D mesh); returns this rank's rows of each result, as bf16 local tensors."""
    if not updates:
        return []
    mesh = updates[0].device_mesh
    group, rank, world = mesh.get_group(), mesh.get_local_rank(), mesh.size()
    device = updates[0].to_local().device
    owner = owners([u.shape for u in updates], world)
    order = sorted(range(len(updates)), key=lambda i: -newton_schulz_flops(*updates[i].shape))
    chunks = [_Chunk(order[s:s + chunk_size], updates, owner, rank, world) for s in range(0, len(order), chunk_size)]
    results: dict[int, torch.Tensor] = {}
    gather = chunks[0].start_gather(updates, group)
    scatter = None
    for c, chunk in enumerate(chunks):
        work, receive, splits = gather
        work.wait()
        if c + 1 < len(chunks):
            gather = chunks[c + 1].start_gather(updates, group)
        assembled = chunk.assemble(receive, splits)
        owned = dict(zip(assembled, orthogonalize(list(assembled.values()))))
        if scatter is not None:
            previous, (work_s, receive_s, splits_s) = scatter
            work_s.wait()
            results.update(previous.local_results(receive_s, splits_s))
        scatter = (chunk, chunk.start_scatter(owned, group, device))
    previous, (work_s, receive_s, splits_s) = scatter
    work_s.wait()
    results.update(previous.local_results(receive_s, splits_s))
    return [results[i] for i in range(len(updates))]
