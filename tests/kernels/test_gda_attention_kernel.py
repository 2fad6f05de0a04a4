"""GDA's fused attention core (kernels.gda_attention), run through Triton's interpreter, against a plain fp64
softmax attention per head built from the definition (full score matrix, causal mask).

Tolerances: fp32 inputs reach the kernel exactly; each score sums head_dim products and each output a
probability-weighted sum over at most seq keys, all accumulated in fp32 with an online softmax, so outputs and
gradients stay within about seq x 1e-7 of values of order one; 2e-5 absolute (1e-5 relative to the largest logit
for the maxima) leaves a margin on any x86-64 (numpy's fp32 matmuls may use FMA or not).
"""

import math

import pytest
import torch

from kernels.gda_attention import gda_attention, gda_attention_reference


def naive(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    """Per head, softmax(q k^T / sqrt(d) + causal mask) v in fp64, and each head's largest visible logit."""
    batch, seq, groups, heads, dim = q.shape
    future = torch.triu(torch.ones(seq, seq, dtype=torch.bool), 1)
    outputs, maxima = [], []
    for g in range(groups):
        for j in range(heads):
            key = k[:, :, 2 * g + (j == heads - 1)].double()
            scores = torch.einsum("bid,bjd->bij", q[:, :, g, j].double(), key) / math.sqrt(dim)
            scores = scores.masked_fill(future, float("-inf"))
            maxima.append(scores.amax())
            outputs.append(torch.softmax(scores, -1) @ v[:, :, g].double())
    out = torch.stack(outputs, 2).view(batch, seq, groups, heads, 2 * dim)
    signal = out[:, :, :, :-1].reshape(batch, seq, groups * (heads - 1), 2 * dim)
    return signal, out[:, :, :, -1], torch.stack(maxima)


def inputs(batch, seq, groups, ratio, dim, seed=0):
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, seq, groups, ratio + 1, dim, generator=generator) * 1.5
    k = torch.randn(batch, seq, 2 * groups, dim, generator=generator) * 1.5
    v = torch.randn(batch, seq, groups, 2 * dim, generator=generator)
    return [t.requires_grad_() for t in (q, k, v)]


@pytest.mark.parametrize("batch,seq,groups,ratio,dim", [
    (2, 40, 2, 2, 16),   # several blocks, the last one partial
    (1, 37, 1, 4, 16),   # Motif-2's 4:1 ratio, one group
    (1, 16, 3, 1, 32),   # plain differential attention (r = 1), one block exactly
    (1, 7, 2, 4, 16),    # shorter than one block
])
def test_forward_backward_and_maxima_match_the_definition(batch, seq, groups, ratio, dim):
    q, k, v = inputs(batch, seq, groups, ratio, dim, seed=seq)
    signal, noise, maxima = gda_attention(q, k, v, track_max_logits=True, impl="triton")
    want_signal, want_noise, want_maxima = naive(q, k, v)
    torch.testing.assert_close(signal.double(), want_signal, atol=2e-5, rtol=0)
    torch.testing.assert_close(noise.double(), want_noise, atol=2e-5, rtol=0)
    torch.testing.assert_close(maxima.double(), want_maxima, atol=1e-5 * want_maxima.abs().max().item(), rtol=0)

    grad_signal, grad_noise = torch.randn_like(signal), torch.randn_like(noise)
    got = torch.autograd.grad((signal * grad_signal).sum() + (noise * grad_noise).sum(), (q, k, v))
    want = torch.autograd.grad((want_signal * grad_signal.double()).sum() + (want_noise * grad_noise.double()).sum(),
                               (q, k, v))
    for name, g, w in zip("qkv", got, want):
        torch.testing.assert_close(g.double(), w.double(), atol=2e-5, rtol=0, msg=lambda m, name=name: f"d{name}: {m}")


def test_the_reference_path_matches_the_definition():
    q, k, v = inputs(2, 24, 2, 4, 8)
    signal, noise, maxima = gda_attention_reference(q.double(), k.double(), v.double(), track_max_logits=True)
    want_signal, want_noise, want_maxima = naive(q, k, v)
    torch.testing.assert_close(signal, want_signal)
    torch.testing.assert_close(noise, want_noise)
    torch.testing.assert_close(maxima.double(), want_maxima)


def test_no_grad_and_a_single_branch_gradient():
    """Under no_grad nothing is saved; with only the signal used, the noise branch's gradient is zero."""
    q, k, v = inputs(1, 20, 1, 2, 16)
    with torch.no_grad():
        signal, noise, maxima = gda_attention(q, k, v, impl="triton")
    assert maxima is None and not signal.requires_grad
    out, _, _ = gda_attention(q, k, v, impl="triton")
    dq, = torch.autograd.grad(out.sum(), (q,))
    assert torch.all(dq[:, :, :, -1] == 0) and dq[:, :, :, :-1].abs().sum() > 0


def test_layouts_the_kernel_cannot_tile_take_the_reference():
    q, k, v = inputs(1, 12, 1, 3, 16)  # r = 3 is not a power of two
    signal, noise, _ = gda_attention(q, k, v, impl="triton")
    want_signal, want_noise, _ = naive(q, k, v)
    torch.testing.assert_close(signal.double(), want_signal, atol=1e-5, rtol=0)


def test_the_custom_ops_pass_opcheck_and_compile_without_graph_breaks():
    """Fake tensors, autograd registration and schema as torch.library checks them; a fullgraph compile (each op
    opaque to the compiler) gives the eager outputs and gradients."""
    from kernels.gda_attention import gda_attention_backward, gda_attention_forward

    q, k, v = inputs(1, 20, 2, 2, 16, seed=3)
    torch.library.opcheck(gda_attention_forward, (q.detach(), k.detach(), v.detach()))
    signal, noise, lse_s, lse_n, _ = gda_attention_forward(q.detach(), k.detach(), v.detach())
    torch.library.opcheck(gda_attention_backward, (torch.randn_like(signal), torch.randn_like(noise), q.detach(),
                                                   k.detach(), v.detach(), signal, noise, lse_s, lse_n))

    def core(q, k, v):
        signal, noise, maxima = gda_attention(q, k, v, track_max_logits=True, impl="triton")
        return signal.square().sum() + noise.sum(), maxima

    eager_loss, eager_maxima = core(q, k, v)
    compiled_loss, compiled_maxima = torch.compile(core, fullgraph=True, backend="aot_eager")(q, k, v)
    assert torch.equal(compiled_loss, eager_loss) and torch.equal(compiled_maxima, eager_maxima)
    eager_grads = torch.autograd.grad(eager_loss, (q, k, v))
    compiled_grads = torch.autograd.grad(compiled_loss, (q, k, v))
    for eager, compiled in zip(eager_grads, compiled_grads):
        assert torch.equal(compiled, eager)
