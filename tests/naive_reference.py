"""Plain fp64 re-statements of the published formulas, written independently of the modules under test.

Everything here loops over heads and builds full S x S score matrices, which is slow and obviously right.
"""

import math

import torch


def rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotate-half RoPE on (batch, seq, dim): pair (i, i + dim/2) rotated by position * theta^(-2i/dim)."""
    _, seq, dim = x.shape
    half = dim // 2
    out = x.clone()
    for i in range(half):
        angle = torch.arange(seq, dtype=x.dtype) * theta ** (-2.0 * i / dim)
        c, s = torch.cos(angle)[None, :], torch.sin(angle)[None, :]
        out[..., i] = x[..., i] * c - x[..., i + half] * s
        out[..., i + half] = x[..., i + half] * c + x[..., i] * s
    return out


def causal_softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) with future positions masked) v, for (batch, seq, dim) inputs."""
    seq, dim = q.shape[1], q.shape[2]
    scores = q @ k.transpose(1, 2) / math.sqrt(dim)
    future = torch.triu(torch.ones(seq, seq, dtype=torch.bool), diagonal=1)
    return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ v


def rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def head(t: torch.Tensor, index: int, dim: int) -> torch.Tensor:
    return t[..., index * dim:(index + 1) * dim]


def motif_lambda_init(layer_idx: int) -> float:
    """lambda_init of the released Motif-2 models for the 0-based layer index: 0.8 - 0.6 exp(-0.3 (l - 1))."""
    return 0.8 - 0.6 * math.exp(-0.3 * (layer_idx - 1))


def grouped_differential_attention(x, weights, groups, ratio, head_dim, layer_idx, theta, subln_eps):
    """GDA (arXiv 2510.06949, as in the Motif-2-12.7B checkpoint) on fp64 x (batch, seq, hidden) with the module's
    weights (a name -> tensor dict) and the released models' lambda_init."""
    d = head_dim
    q, k, v = (x @ weights[f"{n}_proj.weight"].T for n in ("q", "k", "v"))
    lambda_init = motif_lambda_init(layer_idx)
    lam = (torch.exp(weights["lambda_q1"] @ weights["lambda_k1"]) - torch.exp(weights["lambda_q2"] @ weights["lambda_k2"])
           + lambda_init)
    outputs = []
    for g in range(groups):
        k1, k2 = rope(head(k, 2 * g, d), theta), rope(head(k, 2 * g + 1, d), theta)
        values = torch.cat([head(v, 2 * g, d), head(v, 2 * g + 1, d)], dim=-1)  # [v1_g ; v2_g]
        noise = causal_softmax_attention(rope(head(q, g * (ratio + 1) + ratio, d), theta), k2, values)
        for j in range(ratio):
            signal = causal_softmax_attention(rope(head(q, g * (ratio + 1) + j, d), theta), k1, values)
            outputs.append((1 - lambda_init) * rms(signal - lam * noise, weights["subln.weight"], subln_eps))
    return torch.cat(outputs, dim=-1) @ weights["o_proj.weight"].T


def grouped_query_attention(x, weights, num_heads, num_kv_heads, head_dim, theta):
    d = head_dim
    q, k, v = (x @ weights[f"{n}_proj.weight"].T for n in ("q", "k", "v"))
    per_group = num_heads // num_kv_heads
    outputs = [
        causal_softmax_attention(rope(head(q, h, d), theta), rope(head(k, h // per_group, d), theta), head(v, h // per_group, d))
        for h in range(num_heads)
    ]
    return torch.cat(outputs, dim=-1) @ weights["o_proj.weight"].T


def polynorm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """w0 N(x^3) + w1 N(x^2) + w2 N(x) + b with N(u) = u / sqrt(mean(u^2) + eps) (arXiv 2411.03884, Eq. 3)."""
    def n(u):
        return u / torch.sqrt(u.pow(2).mean(-1, keepdim=True) + eps)
    return weight[0] * n(x**3) + weight[1] * n(x**2) + weight[2] * n(x) + bias[0]


def released_model_logits(tensors: dict[str, torch.Tensor], config: dict, tokens: torch.Tensor) -> torch.Tensor:
    """fp64 logits of the released Motif-2 architecture from its Hugging Face tensors and config.json fields:
    pre-norm blocks of grouped differential attention (the released lambda_init, sub-norm) and the PolyNorm-gated
    MLP, RoPE over the whole head, final norm, lm_head (the embedding when tied)."""
    w = {name: t.double() for name, t in tensors.items()}
    eps, groups, d = config["rms_norm_eps"], config["num_noise_heads"], config["head_dim"]
    ratio = config["num_attention_heads"] // groups - 1
    x = w["model.embed_tokens.weight"][tokens]
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        attention = {k[len(p + "self_attn."):]: v for k, v in w.items() if k.startswith(p + "self_attn.")}
        h = x + grouped_differential_attention(rms(x, w[p + "input_layernorm.weight"], eps), attention, groups, ratio,
                                               d, i, config["rope_theta"], config["attn_rms_norm_eps"])
        n = rms(h, w[p + "post_attention_layernorm.weight"], eps)
        gate, up = n @ w[p + "mlp.gate_proj.weight"].T, n @ w[p + "mlp.up_proj.weight"].T
        x = h + (polynorm(gate, w[p + "mlp.act_fn.weight"], w[p + "mlp.act_fn.bias"], 1e-6) * up) @ w[p + "mlp.down_proj.weight"].T
    head_weight = w["lm_head.weight"] if "lm_head.weight" in w else w["model.embed_tokens.weight"]
    return rms(x, w["model.norm.weight"], eps) @ head_weight.T
