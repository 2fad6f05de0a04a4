"""Per-block torch.compile against eager: one optimizer step of 16 micro-batches x 4,096 tokens on one GPU, at the
12.7B widths cut to 8 layers, for the Motif model and the Llama-style baseline of ``benchmarks.train_step``.

    python -m benchmarks.compiled_step --kind motif [--fused_core] [--micro_batches 16]
    python -m benchmarks.compiled_step --kind baseline      (one process per GPU runs both at once)

Blocks are compiled the way ``motif fit`` compiles them (``lightning_motif.parallelism.apply_parallelism`` with
``compile: true``: each block compiled in place, one graph shared by every block of the same shape). Reports the
median step time over 5 steps after 2 warm-up steps (the first compiles), the optimizer's share, and Dynamo's
counters: graphs compiled and graph breaks (a per-layer constant would compile every block again, up to the
recompile limit, after which the remaining blocks silently run eagerly). ``--fused_core`` runs GDA's attention
through the one-pass kernel (``kernels.gda_attention``) instead of two SDPA calls and the max-logit kernel.
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")

import torch
from torch._dynamo.utils import counters

from benchmarks.train_step import LR, SEQ, VOCAB, config
from components.model import MotifForCausalLM
from components.optim import MuonClip
from components.optim.param_groups import motif_param_groups
from lightning_motif.parallelism import ParallelismConfig, apply_parallelism

LAYERS, WARMUP, STEPS = 8, 2, 5


def build(kind: str, compile_blocks: bool, fused_core: bool):
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = MotifForCausalLM(config(kind, LAYERS, fused_core))
    apply_parallelism(model, ParallelismConfig(compile=compile_blocks), None)
    groups = motif_param_groups(model)
    if kind == "motif":
        optimizer = MuonClip(groups, lr=LR, weight_decay=0.1, qk_clip_tau=100.0)
        attentions = [layer.self_attn for layer in model.model.layers]
        optimizer.set_qk_clip_sources([a.qk_clip_target for a in attentions])
    else:
        attentions = []
        optimizer = torch.optim.AdamW(groups, lr=LR, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    return model, optimizer, attentions


def step(model, optimizer, attentions, tokens) -> tuple[float, float, float]:
    """(loss, milliseconds of the step, milliseconds of the optimizer)."""
    marks = [torch.cuda.Event(enable_timing=True) for _ in range(3)]
    marks[0].record()
    for attention in attentions:
        attention.reset_max_logits()
        attention.track_max_logits = True
    total = torch.zeros((), device="cuda")
    for micro_batch in tokens:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(micro_batch[:, :-1], targets=micro_batch[:, 1:]) / tokens[:, :, 1:].numel()
        loss.backward()
        total += loss.detach()
    marks[1].record()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    marks[2].record()
    torch.cuda.synchronize()
    return total.item(), marks[0].elapsed_time(marks[2]), marks[1].elapsed_time(marks[2])


def run(kind: str, compile_blocks: bool, fused_core: bool, micro_batches: int) -> dict:
    torch._dynamo.reset()
    counters.clear()
    model, optimizer, attentions = build(kind, compile_blocks, fused_core)
    generator = torch.Generator("cuda").manual_seed(1)
    tokens = torch.randint(0, VOCAB, (micro_batches, 1, SEQ + 1), device="cuda", generator=generator)
    started = time.perf_counter()
    losses = [step(model, optimizer, attentions, tokens)[0] for _ in range(WARMUP)]
    warmup_s = time.perf_counter() - started
    timed = [step(model, optimizer, attentions, tokens) for _ in range(STEPS)]
    losses += [loss for loss, _, _ in timed]
    result = {
        "kind": kind, "compile": compile_blocks, "fused_core": fused_core, "layers": LAYERS,
        "tokens_per_step": micro_batches * SEQ,
        "step_ms": statistics.median(ms for _, ms, _ in timed),
        "optimizer_ms": statistics.median(ms for _, _, ms in timed),
        "warmup_s": warmup_s, "first_loss": losses[0], "last_loss": losses[-1],
        "graphs": counters["stats"]["unique_graphs"], "graph_breaks": sum(counters["graph_break"].values()),
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
    }
    del model, optimizer
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=("motif", "baseline"), required=True)
    parser.add_argument("--fused_core", action="store_true", help="GDA's one-pass attention kernel (motif only)")
    parser.add_argument("--micro_batches", type=int, default=16, help="micro-batches of 1 x 4096 per step")
    args = parser.parse_args()
    if args.fused_core and args.kind != "motif":
        parser.error("--fused_core: only --kind motif has a GDA attention core")
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}; {args.kind}, {LAYERS} layers at the 12.7B "
          f"widths, {args.micro_batches} x {SEQ} tokens per step, bf16 autocast", flush=True)
    results = [run(args.kind, compile_blocks, args.fused_core, args.micro_batches) for compile_blocks in (False, True)]
    for result in results:
        print("RESULT " + json.dumps(result), flush=True)
    eager, compiled = results
    print(f"{args.kind}: eager {eager['step_ms']:.0f} ms, compiled {compiled['step_ms']:.0f} ms per step "
          f"({compiled['step_ms'] / eager['step_ms']:.3f}x); {compiled['graphs']} graphs for {LAYERS} blocks, "
          f"{compiled['graph_breaks']} graph breaks", flush=True)


if __name__ == "__main__":
    main()
