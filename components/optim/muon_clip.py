"""MuonClip: Muon for hidden matrices and AdamW for everything else in one optimizer, then QK-clip
(Moonlight, arXiv 2502.16982, Sec. 2; Kimi K2, arXiv 2507.20534, Sec. 2.1).

Param groups carry ``use_muon`` (see ``components.optim.param_groups.motif_param_groups``). For a Muon matrix
W (rows x cols) with gradient G:
  B <- mu B + G;  U = G + mu B (Nesterov; U = B without);  O = NS5(U) in bf16
  W <- W - lr * (0.2 * sqrt(max(rows, cols)) * O + wd * W)
The 0.2 * sqrt(max(rows, cols)) factor gives the update the RMS of a typical AdamW update, so both kinds of
parameter share one learning rate. Other parameters take a standard AdamW step with decoupled weight decay.

FSDP2 parameters (DTensors sharded by rows) are orthogonalised with Parallel Muon (``parallel_muon``), or, with
``parallel_muon=False`` or any other placement, by gathering each full matrix on every rank (plain
distributed Muon). After the updates, QK-clip rescales the query/key rows of heads whose logits exceeded
``qk_clip_tau`` during the step (``set_qk_clip_sources`` names the attention layers; None disables it).
"""

import math
from collections.abc import Callable, Iterable

import torch
from torch.distributed.tensor import DTensor, distribute_tensor
from torch.optim.adamw import adamw

from components.config_error import require
from components.optim.newton_schulz import newton_schulz_many
from components.optim.parallel_muon import is_row_sharded, orthogonalize_row_sharded
from components.optim.qk_clip import QKClipTarget, qk_clip_


class MuonClip(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable,
        lr: float = 4e-4,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        update_scale: float = 0.2,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        qk_clip_tau: float | None = 100.0,
        parallel_muon: bool = True,
        parallel_chunk_size: int = 32,
    ) -> None:
        self.lr, self.weight_decay, self.momentum, self.ns_steps = lr, weight_decay, momentum, ns_steps
        self.betas, self.eps, self.qk_clip_tau, self.parallel_chunk_size = betas, eps, qk_clip_tau, parallel_chunk_size
        require(lr >= 0, self, "lr", "use a non-negative learning rate (Motif-2 peak: 4e-4)")
        require(weight_decay >= 0, self, "weight_decay", "use a non-negative weight decay such as 0.1")
        require(0 <= momentum < 1, self, "momentum", "use a momentum in [0, 1), Muon's default is 0.95")
        require(ns_steps >= 1, self, "ns_steps", "use at least one Newton-Schulz step (5 is standard)")
        require(all(0 <= b < 1 for b in betas), self, "betas", "AdamW betas lie in [0, 1)")
        require(eps > 0, self, "eps", "use a small positive eps such as 1e-8")
        require(qk_clip_tau is None or qk_clip_tau > 0, self, "qk_clip_tau", "use a positive logit bound (Kimi K2: 100) or null")
        require(parallel_chunk_size >= 1, self, "parallel_chunk_size", "use a positive number of matrices (32 is best)")
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps,
                        update_scale=update_scale, betas=betas, eps=eps, use_muon=False)
        super().__init__(params, defaults)
        self.parallel_muon = parallel_muon
        self._qk_clip_sources: list[Callable[[], QKClipTarget]] = []
        self.clipped_heads: list[int] = []
        """Query heads clipped by the last step, per QK-clip source."""

    def set_qk_clip_sources(self, sources: list[Callable[[], QKClipTarget]]) -> None:
        """Attention layers to clip after each step: callables that return the layer's current QKClipTarget."""
        self._qk_clip_sources = list(sources)

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["use_muon"]:
                self._muon_step(group)
            else:
                self._adamw_step(group)
        if self.qk_clip_tau is not None:
            self.clipped_heads = [qk_clip_(source(), self.qk_clip_tau) for source in self._qk_clip_sources]
        return loss

    def _muon_step(self, group: dict) -> None:
        params = [p for p in group["params"] if p.grad is not None]
        updates = []
        for p in params:
            if p.ndim != 2:
                raise ValueError(f"Muon orthogonalises matrices; got a parameter of shape {tuple(p.shape)}: "
                                 "route it to an AdamW group (use_muon: false)")
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            buffer = state["momentum_buffer"]
            buffer.mul_(group["momentum"]).add_(p.grad)
            updates.append(p.grad.add(buffer, alpha=group["momentum"]) if group["nesterov"] else buffer)

        def orthogonalize(matrices: list[torch.Tensor]) -> list[torch.Tensor]:
            return newton_schulz_many(matrices, group["ns_steps"])

        sharded = [i for i, u in enumerate(updates) if self.parallel_muon and is_row_sharded(u)]
        others = sorted(set(range(len(updates))) - set(sharded))
        orthogonal = dict(zip(sharded, orthogonalize_row_sharded([updates[i] for i in sharded], orthogonalize,
                                                                 self.parallel_chunk_size)))
        # any other DTensor (another placement, or parallel_muon off): every rank orthogonalises the full matrix
        full = orthogonalize([updates[i].full_tensor() if isinstance(updates[i], DTensor) else updates[i] for i in others])
        for i, result in zip(others, full):
            p = params[i]
            if isinstance(p, DTensor):  # every rank holds the full result: keep this rank's part, no communication
                result = distribute_tensor(result, p.device_mesh, p.placements, src_data_rank=None).to_local()
            orthogonal[i] = result
        for i, p in enumerate(params):
            target = p.to_local() if isinstance(p, DTensor) else p
            scale = group["update_scale"] * math.sqrt(max(p.shape))
            target.mul_(1 - group["lr"] * group["weight_decay"])
            target.add_(orthogonal[i].to(target.dtype), alpha=-group["lr"] * scale)

    def _adamw_step(self, group: dict) -> None:
        params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        if params:
            beta1, beta2 = group["betas"]
            adamw(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, beta1=beta1, beta2=beta2,
                  lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)
