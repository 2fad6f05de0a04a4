"""QK-clip (Kimi K2, arXiv 2507.20534, Sec. 2.1 MuonClip): bound attention logits by rescaling W_q and W_k rows.

After an optimizer step, each query head h whose largest pre-softmax logit S_max(h) = max q.k / sqrt(d) of the
step exceeded tau gets gamma_h = tau / S_max(h). The logit of head h scales with the product of its query and
key scales, so it must be scaled by gamma_h in total. A key head can serve several query heads (GQA, and GDA's
r signal heads share k1_g); it is scaled once, by sqrt(min gamma over its query heads), and each query head by
gamma_h / sqrt(min gamma) (1 / sqrt(...) for heads under tau), so every head's logits scale by exactly its
gamma_h (or stay as they are) and the key is never scaled twice. Motif's own handling of shared keys is not
published.

S_max is measured in the step's forward, before the optimizer update, and the scaling is applied after it
(as in Kimi K2): on the inputs it was measured on, a clipped head's logits land on tau for the weights it was
measured with; the next forward sees tau times one update's growth, so logits hold near tau instead of rising.
"""

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class QKClipTarget:
    """One attention layer's query/key projections, the key head each query head reads, and the step's maxima."""

    q_weight: torch.Tensor
    """(num_query_heads * head_dim, hidden); rows of head h are [h * head_dim, (h + 1) * head_dim)."""
    k_weight: torch.Tensor
    key_head_of_query: list[int]
    head_dim: int
    max_logits: torch.Tensor | None
    """(num_query_heads,) fp32: the largest logit of each query head during the step (None: nothing measured)."""


def _scale_rows(weight: torch.Tensor, head_scales: torch.Tensor, head_dim: int) -> None:
    scale = head_scales.repeat_interleave(head_dim).unsqueeze(1).to(weight.dtype)
    try:  # an FSDP2 parameter is a DTensor sharded by rows: shard the scale the same way
        from torch.distributed.tensor import DTensor, distribute_tensor

        if isinstance(weight, DTensor):
            scale = distribute_tensor(scale, weight.device_mesh, weight.placements)
    except ImportError:
        pass
    weight.mul_(scale)


@torch.no_grad()
def qk_clip_(target: QKClipTarget, tau: float) -> int:
    """Rescale ``target``'s rows in place where a head's maximum logit exceeded ``tau``; returns the number of
    query heads clipped. In a distributed run the maxima are first reduced (MAX, in place) over all ranks, so
    every rank applies the same scaling."""
    if target.max_logits is None:
        return 0
    max_logits = target.max_logits
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(max_logits, op=dist.ReduceOp.MAX)  # in place: the layer now reports the global maxima
    gamma = torch.clamp(tau / max_logits.clamp_min(1e-30), max=1.0)
    clipped = int((gamma < 1.0).sum())
    if clipped == 0:
        return 0
    key_of_query = torch.tensor(target.key_head_of_query, device=gamma.device)
    num_keys = target.k_weight.shape[0] // target.head_dim
    key_gamma = torch.ones(num_keys, device=gamma.device).scatter_reduce(0, key_of_query, gamma, reduce="amin")
    key_scale = key_gamma.sqrt()
    query_scale = gamma / key_scale[key_of_query]
    _scale_rows(target.q_weight, query_scale, target.head_dim)
    _scale_rows(target.k_weight, key_scale, target.head_dim)
    return clipped
