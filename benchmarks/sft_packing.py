"""Packed SFT on one GPU: what document masking costs and what packing buys (Motif-2 report, arXiv 2511.07464,
Sec. 5: SFT samples packed to 16,384 tokens).

    python -m benchmarks.sft_packing [--seq 16384] [--rows 4] [--layers 8] [--parts attention step] [--skip_flex]

Sample lengths: a fixed-seed log-normal draw (median 1,024 tokens, sigma 1.0, cut to [64, seq]) -- instruction data
with a long tail of worked solutions -- packed in order into ``--rows`` rows by ``lightning_motif.data.packing``.

1. **Attention at ``--seq``** (bf16, forward + backward of the attention core from q, k, v; one row of packed
   samples): plain causal SDPA over the whole row (what an unmasked packed row would compute), the model's
   document-masked path (``components.attention.base.attention_within_samples``: one SDPA call per sample range),
   and FlexAttention with a document block mask (compiled; smaller tiles where the defaults do not fit 256-wide
   values), for the three attentions at their real layouts: GDA (12.7B: 32 signal heads over 8 k1 heads and 8 noise
   heads over 8 k2 heads, values 256), differential (the 2.6B-class layout: 16 + 16 heads, values 256) and GQA
   (32 query heads over 8 key/value heads of 128). The document mask's FLOP floor is the sum of each sample's
   causal half, against the row's causal half.
2. **Training step**: forward + backward over the same samples at the 12.7B widths cut to ``--layers`` layers (GDA,
   PolyNorm, the model's Triton kernels, bf16 autocast; no optimizer step -- it does not depend on the batching),
   eager and with blocks compiled as ``motif fit`` compiles them, batched four ways: packed rows with document
   masking (the SFT path), packed rows attending across samples (a speed ceiling that trains the wrong thing),
   micro-batches of consecutive samples padded to their longest within the same token budget as a row
   (``count x longest <= seq``), and one sample per micro-batch. Tokens/s counts the samples' own tokens only.
"""

import argparse
import json
import os

os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")

import numpy as np
import torch

from benchmarks.timing import median_ms
from benchmarks.train_step import VOCAB, config
from components.attention.base import attention_within_samples, causal_attention
from components.documents import PackedDocuments
from components.model import MotifForCausalLM
from kernels.linear_cross_entropy import IGNORE_INDEX
from lightning_motif.data.chat import ChatSample
from lightning_motif.data.packing import build_row, pack_lengths
from lightning_motif.parallelism import ParallelismConfig, apply_parallelism

LAYOUTS = {  # name: [(query heads, key/value heads, value width), ...] per SDPA call, head_dim 128
    "gda": [(32, 8, 256), (8, 8, 256)],
    "differential": [(16, 16, 256), (16, 16, 256)],
    "gqa": [(32, 8, 128)],
}
HEAD_DIM = 128
FLEX_TILES = [None, {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_M1": 32, "BLOCK_N1": 64, "BLOCK_M2": 64, "BLOCK_N2": 32},
              {"BLOCK_M": 64, "BLOCK_N": 32, "BLOCK_M1": 32, "BLOCK_N1": 32, "BLOCK_M2": 32, "BLOCK_N2": 32}]


def sample_lengths(seq: int, rows: int, seed: int = 0) -> list[list[int]]:
    """Token counts of the samples of ``rows`` packed rows (each sample n tokens takes n - 1 positions)."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(1024), 1.0, size=rows * seq // 64), 64, seq).astype(int).tolist()
    return [[lengths[i] for i in row] for row in pack_lengths(lengths, seq)[:rows]]


def row_documents(row: list[int], seq: int) -> torch.Tensor:
    """(1, seq) sample ids of one packed row; the padding is a sample of its own."""
    positions = [n - 1 for n in row]
    padding = seq - sum(positions)
    return PackedDocuments.from_lengths([positions + ([padding] if padding else [])], "cuda").ids


def causal_flops(lengths: list[int]) -> int:
    return sum(n * (n + 1) // 2 for n in lengths)


def attention_core(kind: str, path: str, documents: torch.Tensor, flex=None) -> tuple:
    """A closure running forward + backward of ``kind``'s SDPA calls over one row by ``path``, and its inputs."""
    seq = documents.shape[1]
    calls = []
    for q_heads, kv_heads, value in LAYOUTS[kind]:
        make = lambda heads, width: torch.randn(1, seq, heads, width, device="cuda", dtype=torch.bfloat16,
                                                 requires_grad=True)
        calls.append((make(q_heads, HEAD_DIM), make(kv_heads, HEAD_DIM), make(kv_heads, value)))

    def run():
        outputs = []
        for q, k, v in calls:
            if path == "causal":
                outputs.append(causal_attention(q, k, v))
            elif path == "per_sample":
                outputs.append(attention_within_samples(q, k, v, documents))
            else:
                outputs.append(flex(q, k, v))
        torch.autograd.backward(outputs, [torch.ones_like(o) for o in outputs])
    return run


def flex_runner(documents: torch.Tensor, tiles: dict | None, causal_only: bool):
    """FlexAttention with a document (or plain causal) block mask, compiled; inputs (1, seq, heads, dim)."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    ids = documents[0]

    def mask(b, h, q, k):
        return (q >= k) if causal_only else (q >= k) & (ids[q] == ids[k])

    seq = ids.shape[0]
    torch._dynamo.reset()  # a fresh compile per layout: shapes of earlier layouts would use up the recompile limit
    block_mask = create_block_mask(mask, None, None, seq, seq, device="cuda")
    compiled = torch.compile(flex_attention)

    def run(q, k, v):
        out = compiled(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), block_mask=block_mask,
                       enable_gqa=q.shape[2] != k.shape[2], kernel_options=tiles)
        return out.transpose(1, 2)
    return run


def attention_results(seq: int, row: list[int], skip_flex: bool) -> list[dict]:
    documents = row_documents(row, seq)
    floor = causal_flops([n - 1 for n in row]) / causal_flops([seq])
    results = []
    for kind in LAYOUTS:
        times = {path: median_ms(attention_core(kind, path, documents), repeats=10)
                 for path in ("causal", "per_sample")}
        for name, causal_only in (() if skip_flex else (("flex_document", False), ("flex_causal", True))):
            for tiles in FLEX_TILES:
                try:
                    flex = flex_runner(documents, tiles, causal_only)
                    times[name] = median_ms(attention_core(kind, "flex", documents, flex), repeats=10)
                    times[name + "_tiles"] = tiles or "default"
                    break
                except Exception as error:  # a tile that does not fit this layout: try the next, smaller one
                    times[name + "_error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
        result = {"kind": kind, "seq": seq, "samples": len(row), "flop_floor_vs_causal": floor, **times}
        print("ATTENTION " + json.dumps(result), flush=True)
        results.append(result)
    return results


def batches(rows: list[list[int]], seq: int, how: str) -> list[dict]:
    """Micro-batches of random tokens for the samples of ``rows``, batched ``how``."""
    generator = torch.Generator().manual_seed(0)
    samples = [torch.randint(0, VOCAB, (n,), generator=generator) for row in rows for n in row]
    if how.startswith("packed"):  # rows built as the SFT stream builds them, every token trained
        out, start = [], 0
        for row in rows:
            chunk = [ChatSample(s.numpy(), np.ones(len(s), dtype=bool)) for s in samples[start:start + len(row)]]
            start += len(row)
            packed = build_row(chunk, seq, pad_id=0)
            documents = packed.documents[None].cuda() if how == "packed" else None
            out.append({"tokens": packed.tokens[None].cuda(), "targets": packed.targets[None].cuda(),
                        "documents": documents})
        return out
    groups, group = [], []
    for sample in samples:
        if how == "padded" and group and (len(group) + 1) * max(len(s) - 1 for s in group + [sample]) > seq:
            groups.append(group)
            group = []
        group.append(sample)
        if how == "one_per_batch":
            groups.append(group)
            group = []
    groups += [group] if group else []
    out = []
    for group in groups:
        width = max(len(s) - 1 for s in group)
        tokens = torch.zeros(len(group), width, dtype=torch.long)
        targets = torch.full((len(group), width), IGNORE_INDEX)
        for i, sample in enumerate(group):
            tokens[i, :len(sample) - 1] = sample[:-1]
            targets[i, :len(sample) - 1] = sample[1:]
        out.append({"tokens": tokens.cuda(), "targets": targets.cuda(), "documents": None})
    return out


def step_results(rows: list[list[int]], seq: int, layers: int) -> list[dict]:
    sample_tokens = sum(n - 1 for row in rows for n in row)
    results = []
    for compile_blocks in (False, True):
        torch._dynamo.reset()
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = MotifForCausalLM(config("motif", layers))
        apply_parallelism(model, ParallelismConfig(compile=compile_blocks), None)
        for how in ("packed", "packed_unmasked", "padded", "one_per_batch"):
            micro_batches = batches(rows, seq, how)

            def step():
                for batch in micro_batches:
                    documents = None if batch["documents"] is None else PackedDocuments(batch["documents"])
                    with torch.autocast("cuda", dtype=torch.bfloat16):
                        loss = model(batch["tokens"], targets=batch["targets"], documents=documents)
                    loss.backward()
                model.zero_grad(set_to_none=True)
            ms = median_ms(step, repeats=3, warmup=2)
            padded = sum(b["tokens"].numel() for b in micro_batches)
            result = {"how": how, "compile": compile_blocks, "layers": layers, "micro_batches": len(micro_batches),
                      "sample_tokens": sample_tokens, "computed_tokens": padded, "step_ms": ms,
                      "tokens_per_s": sample_tokens / ms * 1000, "peak_gib": torch.cuda.max_memory_allocated() / 2**30}
            print("STEP " + json.dumps(result), flush=True)
            results.append(result)
            torch.cuda.reset_peak_memory_stats()
        del model
        torch.cuda.empty_cache()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seq", type=int, default=16384)
    parser.add_argument("--rows", type=int, default=4, help="packed rows of samples in the training step")
    parser.add_argument("--layers", type=int, default=8, help="decoder layers at the 12.7B widths")
    parser.add_argument("--parts", nargs="+", choices=("attention", "step"), default=["attention", "step"])
    parser.add_argument("--skip_flex", action="store_true", help="no FlexAttention timings")
    args = parser.parse_args()
    rows = sample_lengths(args.seq, args.rows)
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}; rows of {args.seq}: "
          f"{[len(r) for r in rows]} samples, fill {[round(sum(n - 1 for n in r) / args.seq, 3) for r in rows]}",
          flush=True)
    if "attention" in args.parts:
        attention_results(args.seq, rows[0], args.skip_flex)
    if "step" in args.parts:
        step_results(rows, args.seq, args.layers)


if __name__ == "__main__":
    main()
