"""Fused (chunked) linear + cross-entropy for the lm head: the loss of hidden @ weight^T without materialising
the (tokens x vocabulary) logits.

Tokens are processed in chunks. For each chunk the forward pass forms its logits (the GEMM in the input dtype),
their log-softmax in fp32 (one fused pass) and the loss, and immediately the gradient of the summed loss with
respect to the logits, softmax - one_hot, written once in the input dtype (what the unfused backward's GEMM
consumes too), from which it forms d(hidden) and accumulates d(weight) in fp32 (cast to the weight's dtype once,
at the end: bf16 sums over many chunks lose bits); the chunk's logits are then dropped. The backward pass only
scales the stored gradients by the incoming gradient. Peak memory is one chunk of fp32 logits instead of all of
them (at 16K tokens and a 219,520 vocabulary: 1.8 GB for a 2,048-token chunk against 14 GB of fp32 logits) plus
the fp32 weight gradient, for the same three GEMMs as the unfused path. Without a gradient to compute
(``no_grad``, ``inference_mode``, inputs that require none: every validation batch) only the loss is formed.
Targets equal to ``ignore_index`` contribute neither loss nor gradient."""

from typing import Literal

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def linear_cross_entropy_reference(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                                   ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Summed cross-entropy of (hidden @ weight^T) in fp32 (or wider), the unfused path."""
    logits = hidden @ weight.T
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.cross_entropy(logits, targets, ignore_index=ignore_index, reduction="sum")


def _chunks(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_tokens: int, ignore_index: int):
    """Per chunk of tokens: (token slice, its hidden rows, fp32 log-softmax of its logits, valid mask, safe targets)."""
    for start in range(0, hidden.shape[0], chunk_tokens):
        rows = slice(start, start + chunk_tokens)
        h, t = hidden[rows], targets[rows]
        log_probs = torch.log_softmax(h @ weight.T, dim=-1, dtype=torch.float32)  # one fused pass
        valid = t != ignore_index
        yield rows, h, log_probs, valid, torch.where(valid, t, 0)


def _chunk_loss(log_probs: torch.Tensor, valid: torch.Tensor, safe_targets: torch.Tensor) -> torch.Tensor:
    return -(log_probs.gather(1, safe_targets[:, None]).squeeze(1) * valid).sum()


def _accumulate_weight_grad(grad_weight: torch.Tensor, grad_logits: torch.Tensor, h: torch.Tensor) -> None:
    """grad_weight (fp32) += grad_logits^T h, the GEMM in the inputs' dtype with fp32 accumulation."""
    if grad_logits.dtype == grad_weight.dtype:
        grad_weight.addmm_(grad_logits.T, h)
    elif grad_weight.is_cuda:  # cuBLAS adds the bf16/fp16 product into the fp32 buffer in its epilogue
        torch.addmm(grad_weight, grad_logits.T, h, out_dtype=grad_weight.dtype, out=grad_weight)
    else:
        grad_weight.addmm_(grad_logits.T.float(), h.float())


def _chunked_loss_without_grad(hidden, weight, targets, chunk_tokens: int, ignore_index: int) -> torch.Tensor:
    loss = torch.zeros((), device=hidden.device, dtype=torch.float32)
    for _, _, log_probs, valid, safe_targets in _chunks(hidden, weight, targets, chunk_tokens, ignore_index):
        loss += _chunk_loss(log_probs, valid, safe_targets)
    return loss


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_tokens: int,
                ignore_index: int) -> torch.Tensor:
        needs_hidden_grad, needs_weight_grad = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_hidden = torch.empty_like(hidden) if needs_hidden_grad else None
        # summed over every chunk in fp32 whatever the weight's dtype: bf16 sums of many chunks lose bits
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if needs_weight_grad else None
        loss = torch.zeros((), device=hidden.device, dtype=torch.float32)
        for rows, h, log_probs, valid, safe_targets in _chunks(hidden, weight, targets, chunk_tokens, ignore_index):
            loss += _chunk_loss(log_probs, valid, safe_targets)
            # softmax - one_hot, written once in the GEMM dtype (the unfused backward's GEMM sees the same)
            grad_logits = torch.exp(log_probs, out=torch.empty(log_probs.shape, dtype=hidden.dtype, device=hidden.device))
            del log_probs
            grad_logits.scatter_add_(1, safe_targets[:, None], torch.full_like(safe_targets[:, None], -1, dtype=hidden.dtype))
            grad_logits.mul_(valid[:, None].to(hidden.dtype))
            if needs_hidden_grad:
                grad_hidden[rows] = grad_logits @ weight
            if needs_weight_grad:
                _accumulate_weight_grad(grad_weight, grad_logits, h)
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        dh = grad_hidden * grad_loss.to(grad_hidden.dtype) if grad_hidden is not None else None
        dw = _scaled_in_blocks(grad_weight, grad_loss, ctx.weight_dtype) if grad_weight is not None else None
        return dh, dw, None, None, None


def _scaled_in_blocks(grad: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype, rows: int = 8192) -> torch.Tensor:
    """grad * scale in ``dtype``, a block of rows at a time: no second fp32 copy of a weight-sized gradient."""
    out = torch.empty(grad.shape, dtype=dtype, device=grad.device)
    for start in range(0, grad.shape[0], rows):
        out[start:start + rows] = grad[start:start + rows] * scale
    return out


LossImplementation = Literal["chunked", "reference"]
"""How the loss meets the lm head: "chunked" (no full logits) or "reference" (logits, then cross-entropy)."""


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, impl: LossImplementation = "chunked",
                         chunk_tokens: int = 2048, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Summed next-token cross-entropy of ``hidden`` (tokens, dim) through ``weight`` (vocab, dim) against
    ``targets`` (tokens,). ``impl``: "chunked" (never materialises all logits) or "reference"."""
    if impl == "reference":
        return linear_cross_entropy_reference(hidden, weight, targets, ignore_index)
    if not (torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)):
        return _chunked_loss_without_grad(hidden, weight, targets, chunk_tokens, ignore_index)  # evaluation
    return _ChunkedLinearCrossEntropy.apply(hidden, weight, targets, chunk_tokens, ignore_index)
