"""End-to-end training step on one GPU: the 12.7B shape cut to as many layers as fit, Motif against a baseline.

    python -m benchmarks.train_step [--micro_batches 16] [--layers N]

Both models take the Motif-2-12.7B sizes (hidden 4096, FFN 16384, vocab 219,520 untied, RoPE theta 1e6, micro-batches
of 1 x seq 4096, gradients accumulated over ``--micro_batches`` of them per optimizer step, 16 by default: a real
run's step, not one micro-batch) with the same number of decoder layers, the largest that fits the GPU for both (found from the peak
memory of 4- and 8-layer probes, then lowered on out-of-memory):

- Motif: GDA (8 noise heads x 4 signal heads = 40 query heads, 16 key/value heads of 128, fused Triton combine),
  PolyNorm MLP (fused Triton kernels), MuonClip with QK-clip on (tau 100, every head's max logit measured
  each step by the Triton kernel), fused add + RMSNorm, chunked linear + cross-entropy.
- Baseline: standard GQA with 32 query heads over 8 key/value heads of 128 (the usual layout for hidden 4096),
  SwiGLU MLP, torch AdamW (fused), the same norms and chunked loss.

fp32 parameters and optimizer state; forward and backward under ``torch.autocast(bfloat16)``, as the Lightning
module trains with ``precision: bf16-mixed`` (the lm head casts its weight to bf16 for the chunked loss, as autocast
does for a plain linear layer). No activation checkpointing. One step: per micro-batch a forward and a backward of
its summed loss / the step's tokens, then ``optimizer.step()``, ``zero_grad(set_to_none=True)`` (no clipping).

MFU counts model FLOPs per token with ``components.model_size`` (the count the training dashboard's
``throughput/mfu`` uses): 6 x every matmul weight (blocks and lm_head, not the token embedding) + the attention's
q.k and value work, over the causal half of the keys ((T + 1) / 2 per query), and also over the whole sequence
(PaLM's count); divided by 989 TFLOP/s (H200 dense bf16) and by the bf16 matmul throughput measured in this run.
"""

import argparse
import gc
import math
import os
import statistics

os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")

import torch
import triton
from torch.profiler import ProfilerActivity, profile

from benchmarks.timing import matmul_peak_tflops
from components.attention import GroupedDifferentialAttentionConfig, GroupedQueryAttentionConfig
from components.layers import count_parameters
from components.mlp import PolyNormMLPConfig, SwiGLUConfig
from components.model import ModelConfig, MotifForCausalLM
from components.model_size import model_size
from components.optim import MuonClip
from components.optim.param_groups import motif_param_groups

PEAK_TFLOPS = 989.0
VOCAB, HIDDEN, FFN, SEQ = 219520, 4096, 16384, 4096
LR = 4e-4


def config(kind: str, layers: int, fused_core: bool = False) -> ModelConfig:
    """The 12.7B widths at ``layers`` layers; ``fused_core``: GDA's one-pass attention kernel (Motif only)."""
    if kind == "motif":
        attention = GroupedDifferentialAttentionConfig(num_noise_heads=8, signal_noise_ratio=4, head_dim=128,
                                                       subln_eps=1e-5, kernel="triton", fused_core=fused_core)
        mlp = PolyNormMLPConfig(intermediate_size=FFN, eps=1e-6, kernel="triton")
    else:
        attention = GroupedQueryAttentionConfig(num_heads=32, num_kv_heads=8, head_dim=128, kernel="triton")
        mlp = SwiGLUConfig(intermediate_size=FFN)
    return ModelConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_layers=layers, attention=attention, mlp=mlp,
                       max_position_embeddings=32768, rope_theta=1e6, norm_eps=1e-6, tie_word_embeddings=False,
                       norm_kernel="triton", loss_kernel="chunked")


class Trainer:
    """A model, its optimizer and one fixed batch; ``step()`` runs one training step."""

    def __init__(self, kind: str, layers: int, micro_batches: int, qk_clip: bool = True) -> None:
        self.kind, self.layers, self.micro_batches = kind, layers, micro_batches
        self.config = config(kind, layers)
        torch.manual_seed(0)
        with torch.device("cuda"):
            self.model = MotifForCausalLM(self.config)
        self.attention = [layer.self_attn for layer in self.model.model.layers]
        groups = motif_param_groups(self.model)
        if kind == "motif":
            self.optimizer = MuonClip(groups, lr=LR, weight_decay=0.1, qk_clip_tau=100.0)
            self.set_qk_clip(qk_clip)
        else:
            self.optimizer = torch.optim.AdamW(groups, lr=LR, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
        tokens = torch.randint(0, VOCAB, (1, SEQ + 1), device="cuda", generator=torch.Generator("cuda").manual_seed(1))
        self.inputs, self.targets = tokens[:, :-1], tokens[:, 1:]
        self.events: list[tuple[torch.cuda.Event, ...]] = []

    def set_qk_clip(self, on: bool) -> None:
        for attention in self.attention:
            attention.track_max_logits = on
            attention.reset_max_logits()
        self.optimizer.qk_clip_tau = 100.0 if on else None
        self.optimizer.set_qk_clip_sources([a.qk_clip_target for a in self.attention] if on else [])

    def step(self) -> torch.Tensor:
        marks = [torch.cuda.Event(enable_timing=True) for _ in range(3)]
        marks[0].record()
        for attention in self.attention:
            attention.reset_max_logits()
        loss = torch.zeros((), device="cuda")
        for _ in range(self.micro_batches):  # the same tokens each time: timing, not learning
            with torch.autocast("cuda", dtype=torch.bfloat16):
                micro = self.model(self.inputs, targets=self.targets) / (self.inputs.numel() * self.micro_batches)
            micro.backward()
            loss += micro.detach()
        marks[1].record()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        marks[2].record()
        self.events.append(tuple(marks))
        return loss.detach()

    def model_flops_per_token(self, causal: bool = True) -> float:
        return model_size(self.config, SEQ, causal=causal).flops_per_token


def free() -> None:
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()


def peak_gib(kind: str, layers: int) -> float:
    """Peak allocated memory over two steps of one micro-batch (the second has optimizer state during backward;
    accumulating more micro-batches adds no activation memory)."""
    torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(kind, layers, micro_batches=1)
    for _ in range(2):
        trainer.step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30
    del trainer
    free()
    return peak


def largest_fit(total_gib: float) -> int:
    fits = []
    for kind in ("motif", "baseline"):
        small, large = peak_gib(kind, 4), peak_gib(kind, 8)
        per_layer = (large - small) / 4
        fixed = small - 4 * per_layer
        layers = math.floor((0.92 * total_gib - fixed) / per_layer)
        print(f"probe {kind:8s}: peak {small:.1f} GiB at 4 layers, {large:.1f} GiB at 8 -> {per_layer:.2f} GiB/layer "
              f"+ {fixed:.1f} GiB fixed; 92% of {total_gib:.0f} GiB fits {layers} layers")
        fits.append(layers)
    return min(min(fits), 40)


def measure(trainer: Trainer, warmup: int = 3, steps: int = 10) -> dict:
    for _ in range(warmup):
        trainer.step()
    torch.cuda.synchronize()
    trainer.events.clear()
    for _ in range(steps):
        loss = trainer.step()
    torch.cuda.synchronize()
    total = statistics.median(a.elapsed_time(c) for a, b, c in trainer.events)
    fwd_bwd = statistics.median(a.elapsed_time(b) for a, b, c in trainer.events)
    opt = statistics.median(b.elapsed_time(c) for a, b, c in trainer.events)
    return dict(step_ms=total, fwd_bwd_ms=fwd_bwd, opt_ms=opt, last_loss=loss.item())


def report(name: str, trainer: Trainer, result: dict, matmul_peak: float) -> None:
    tokens_per_s = SEQ * trainer.micro_batches / (result["step_ms"] / 1e3)
    achieved = trainer.model_flops_per_token() * tokens_per_s / 1e12
    palm = trainer.model_flops_per_token(causal=False) * tokens_per_s / 1e12
    result.update(tokens_per_s=tokens_per_s, tflops=achieved, mfu=achieved / PEAK_TFLOPS,
                  of_matmul=achieved / matmul_peak, mfu_noncausal=palm / PEAK_TFLOPS)
    print(f"{name}: step {result['step_ms']:.1f} ms (forward+backward {result['fwd_bwd_ms']:.1f}, optimizer "
          f"{result['opt_ms']:.1f}); {tokens_per_s:,.0f} tokens/s; {achieved:.0f} TFLOP/s = MFU {result['mfu']:.1%} "
          f"of 989 ({result['of_matmul']:.1%} of measured matmul peak; non-causal attention counting "
          f"{result['mfu_noncausal']:.1%}); peak memory {result['peak_gib']:.1f} GiB allocated "
          f"({result['reserved_gib']:.1f} reserved); loss after {result['steps']} steps {result['last_loss']:.3f}")


def run(kind: str, layers: int, micro_batches: int, matmul_peak: float) -> tuple[Trainer, dict]:
    torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(kind, layers, micro_batches)
    print(f"{kind}: {layers} layers, {count_parameters(trainer.model) / 1e9:.2f}B parameters "
          f"({model_size(trainer.config, SEQ).matmul_parameters / 1e9:.3f}B in matmuls counted by 6N), "
          f"{trainer.model_flops_per_token() / 1e9:.2f} GFLOP/token")
    loss0 = trainer.step().item()
    assert math.isfinite(loss0) and abs(loss0 - math.log(VOCAB)) < 2.5, f"{kind}: step-0 loss {loss0}"
    print(f"{kind}: step-0 loss {loss0:.3f} (ln V = {math.log(VOCAB):.3f})")
    result = measure(trainer)
    assert math.isfinite(result["last_loss"]), f"{kind}: loss {result['last_loss']}"
    if result["last_loss"] >= loss0:
        print(f"WARNING {kind}: loss did not fall on the repeated batch ({loss0:.3f} -> {result['last_loss']:.3f})")
    result.update(loss0=loss0, steps=14, peak_gib=torch.cuda.max_memory_allocated() / 2**30,
                  reserved_gib=torch.cuda.max_memory_reserved() / 2**30)
    report(kind, trainer, result, matmul_peak)
    return trainer, result


def kernel_profile(trainer: Trainer) -> None:
    for _ in range(1):
        trainer.step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as trace:
        for _ in range(2):
            trainer.step()
        torch.cuda.synchronize()
    averages = trace.key_averages()
    print(averages.table(sort_by="self_device_time_total", row_limit=20, max_name_column_width=60))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--micro_batches", type=int, default=16, help="micro-batches of 1 x 4096 per optimizer step")
    parser.add_argument("--layers", type=int, default=None, help="decoder layers (default: the most that fit)")
    args = parser.parse_args()
    free_b, total_b = torch.cuda.mem_get_info()
    total_gib = total_b / 2**30
    print(f"GPU: {torch.cuda.get_device_name()} ({total_gib:.0f} GiB), torch {torch.__version__}, triton "
          f"{triton.__version__}; {args.micro_batches} micro-batches of 1 x seq {SEQ} per step, fp32 parameters, "
          f"bf16 autocast, no activation checkpointing")
    matmul_peak = matmul_peak_tflops()
    print(f"measured bf16 matmul (8192^3): {matmul_peak:.0f} TFLOP/s ({matmul_peak / PEAK_TFLOPS:.1%} of 989)")

    layers = args.layers or largest_fit(total_gib)
    motif = baseline = None
    while True:
        out_of_memory = False
        try:
            print(f"--- {layers} layers ---")
            motif, motif_result = run("motif", layers, args.micro_batches, matmul_peak)
            try:
                motif.set_qk_clip(False)
                noclip = measure(motif)
                print(f"motif with QK-clip off (no max-logit measurement): step {noclip['step_ms']:.1f} ms "
                      f"(forward+backward {noclip['fwd_bwd_ms']:.1f}, optimizer {noclip['opt_ms']:.1f})")
                motif.set_qk_clip(True)
                print("torch.profiler, 2 Motif steps (QK-clip on), top kernels by GPU time:")
                kernel_profile(motif)
            except torch.OutOfMemoryError:
                raise
            except Exception as error:  # the timed comparison matters more than the extras
                print(f"QK-clip-off timing / profile failed: {error!r}")
            motif = None
            free()
            baseline, base_result = run("baseline", layers, args.micro_batches, matmul_peak)
            baseline = None
            free()
            break
        except torch.OutOfMemoryError:
            out_of_memory = True  # free outside the handler: the traceback still holds the step's tensors
        if out_of_memory:
            motif = baseline = None
            free()
            print(f"out of memory at {layers} layers")
            layers -= 2
    ratio = motif_result["step_ms"] / base_result["step_ms"]
    flop_ratio = motif_result["tflops"] * motif_result["step_ms"] / (base_result["tflops"] * base_result["step_ms"])
    print(f"Motif step / baseline step: {ratio:.3f}x (target <= 1.15x); model FLOPs per token Motif / baseline "
          f"{flop_ratio:.3f}x; Motif MFU {motif_result['mfu']:.1%} (target >= 45%)")


if __name__ == "__main__":
    main()
