"""Width growth by HyperCloning (arXiv 2409.12903, Sec. 3): every hidden unit, FFN unit and attention head of the
source appears in the target as one or more copies, and the target computes the source's function exactly.

The residual stream of width n * H holds n copies of the source's H-wide stream (unit i of the target copies unit
i mod H), the FFN's n_f * F units likewise. A linear layer takes the rows of the units it outputs and the columns
of the units it reads, each column divided by how many copies of its source unit the input holds (Eq. 3-5: the
copies' sum gives back the source's product). Embeddings and norm weights copy their units (RMSNorm of a tiled
vector is the tiled RMSNorm; so is PolyNorm's normalisation over the tiled FFN units). A tied lm_head cannot take
the 1/n on its columns, so a tied target carries it in the final norm's weight instead.

Symmetry-breaking noise (Sec. 3.2): ``noise`` x the source matrix's standard deviation, drawn per weight and made
to sum to zero over the columns that read copies of one source unit; since those copies hold equal values, each
output is unchanged while the copies' weights differ, so they learn apart. Embeddings carry none (their rows are
outputs, not sums over copies).
"""

from collections.abc import Callable

import torch

from components.growth.heads import HeadMap, rows_of
from components.model import ModelConfig
from kernels.precision import compute_dtype

COPIED = ("self_attn.lambda_q1", "self_attn.lambda_k1", "self_attn.lambda_q2", "self_attn.lambda_k2",
          "self_attn.subln.weight", "mlp.act_fn.weight", "mlp.act_fn.bias")
"""Per-layer tensors of the head or layer as a whole (lambda, sub-norm, PolyNorm's coefficients): copied as they are."""


def tiled(target: int, source: int) -> torch.Tensor:
    """Unit i of a ``target``-wide layer copies unit i mod ``source``."""
    return torch.arange(target) % source


def take(tensor: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    return tensor.index_select(dim, index.to(tensor.device))


def cloned_linear(weight: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, noise: float,
                  generator: torch.Generator | None) -> torch.Tensor:
    """``weight[rows][:, cols]``, each column divided by the number of target columns copying its source column,
    plus ``noise`` that sums to zero over those columns in every row (HyperCloning, arXiv 2409.12903, Eq. 3-5)."""
    copies = torch.bincount(cols, minlength=weight.shape[1]).to(device=weight.device, dtype=weight.dtype)
    grown = take(take(weight, 0, rows), 1, cols) / take(copies, 0, cols)
    if noise == 0 or weight.is_meta:
        return grown
    dtype = compute_dtype(weight)  # fp32, or fp64 for fp64 weights: the copies' noise then cancels to fp64 rounding
    scale = noise * weight.to(dtype).std().item()
    draw = torch.randn(grown.shape, generator=generator, dtype=dtype) * scale
    sums = torch.zeros(grown.shape[0], weight.shape[1], dtype=dtype).index_add_(1, cols, draw)
    draw -= (sums / copies.to(dtype).cpu())[:, cols]
    return grown + draw.to(grown.device, grown.dtype)


def grow_width(state: dict[str, torch.Tensor], source: ModelConfig, target: ModelConfig, heads: HeadMap,
               noise: float = 0.0, generator: torch.Generator | None = None,
               on_layer: Callable[[], None] | None = None) -> dict[str, torch.Tensor]:
    """The source's tensors (Hugging Face names) at the target's widths, for the source's number of layers;
    ``on_layer`` is called after each layer (progress)."""
    hidden = tiled(target.hidden_size, source.hidden_size)
    ffn = tiled(target.mlp.intermediate_size, source.mlp.intermediate_size)
    copies = target.hidden_size // source.hidden_size
    d = target.attention.head_dim
    matrices = {  # per-layer linear weights: (rows, columns) of the source they copy
        "self_attn.q_proj.weight": (rows_of(heads.q, d), hidden),
        "self_attn.k_proj.weight": (rows_of(heads.k, d), hidden),
        "self_attn.v_proj.weight": (rows_of(heads.v, d), hidden),
        "self_attn.o_proj.weight": (hidden, rows_of(heads.o, heads.o_width)),
        "mlp.gate_proj.weight": (ffn, hidden),
        "mlp.up_proj.weight": (ffn, hidden),
        "mlp.down_proj.weight": (hidden, ffn),
    }

    def linear(weight: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return cloned_linear(weight, rows, cols, noise, generator)

    embedding = take(state["model.embed_tokens.weight"], 1, hidden)
    grown = {"model.embed_tokens.weight": embedding}
    for i in range(source.num_layers):
        prefix = f"model.layers.{i}."
        for name in sorted(n for n in state if n.startswith(prefix)):
            part = name[len(prefix):]
            if part in matrices:
                grown[name] = linear(state[name], *matrices[part])
            elif part in ("input_layernorm.weight", "post_attention_layernorm.weight"):
                grown[name] = take(state[name], 0, hidden)
            elif part in COPIED:
                grown[name] = state[name].clone()
            else:
                raise ValueError(f"{name}: no width-growth rule for this tensor")
        if on_layer is not None:
            on_layer()
    final_norm = take(state["model.norm.weight"], 0, hidden)
    if target.tie_word_embeddings:
        grown["model.norm.weight"] = final_norm / copies
        grown["lm_head.weight"] = embedding
    else:
        grown["model.norm.weight"] = final_norm
        head = state.get("lm_head.weight", state["model.embed_tokens.weight"])
        grown["lm_head.weight"] = linear(head, torch.arange(head.shape[0]), hidden)
    return grown
