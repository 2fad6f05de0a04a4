"""Decoding at the 12.7B shapes on one GPU: all 40 layers in bf16 (25.4 GB of weights), random weights.

    python -m benchmarks.decode_bench

Checks first that cached decoding (eager and replayed as a CUDA graph) gives the logits of a full forward on a
short sequence. Then: prefill tokens/s of one 4,096-token prompt; decode tokens/s for a 512-token prompt and 256
new tokens at batch 1 and 64: eager, with each decode step replayed as a CUDA graph, and with the blocks compiled
(torch.compile, one graph per block shape, fusing the step's small elementwise kernels) inside the CUDA graph.
The floor of a decode step is reading every weight and the cache filled so far once, at the bytes per second a
device-to-device copy moves (read + written) in the same run; the table gives the step's time against it.
"""

import statistics
import time

import torch

from benchmarks.timing import median_ms
from components.generation import SamplingConfig, StaticDecodeStep, cast_for_inference
from components.model import MotifForCausalLM
from lightning_motif.initialization import materialize
from lightning_motif.presets import load_model_config

PROMPT, NEW = 512, 256


def copy_bandwidth() -> float:
    """Bytes read + written per second by a device-to-device copy of 4 GB."""
    source = torch.empty(2**31, dtype=torch.uint16, device="cuda")
    target = torch.empty_like(source)
    return 2 * source.numel() * 2 / (median_ms(lambda: target.copy_(source), repeats=10) / 1e3)


def decode_run(model, batch: int, graph: bool) -> dict:
    """Prefill PROMPT tokens per row, then NEW decode steps; seconds per decode step (median)."""
    state = model.decoding_state(batch, PROMPT + NEW)
    tokens = torch.randint(0, model.config.vocab_size, (batch, PROMPT), device="cuda")
    valid = torch.ones(batch, PROMPT, dtype=torch.bool, device="cuda")
    with torch.no_grad():
        logits = model(tokens, step=state.step(valid))[:, -1]
        every_row = torch.ones(batch, 1, dtype=torch.bool, device="cuda")
        decode = StaticDecodeStep(model, state, batch) if graph else (lambda t, s: model(t, step=s)[:, -1])
        times = []
        for _ in range(NEW - 1):
            chosen = logits.argmax(-1)
            torch.cuda.synchronize()
            started = time.perf_counter()
            logits = decode(chosen[:, None], state.step(every_row))
            torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
    return {"step_s": statistics.median(times[5:])}


def check_cached_decoding(config) -> None:
    """Cached decoding (eager and graphed) against full forwards, 6 steps, on the first 4 layers of the 12.7B
    shapes in fp32 on the GPU (the same Triton and attention kernels as the timed runs; fp32 so that the
    comparison is tight: 1e-3 of the logit scale, where a wrong slot, position or mask is O(1))."""
    import dataclasses

    with torch.device("meta"):
        small = MotifForCausalLM(dataclasses.replace(config, num_layers=4))
    materialize(small, torch.device("cuda"), 0)
    small.eval()
    with torch.no_grad():
        tokens = torch.randint(0, config.vocab_size, (2, 40), device="cuda")
        for graph in (False, True):
            state = small.decoding_state(2, 48)
            logits = small(tokens, step=state.step(torch.ones(2, 40, dtype=torch.bool, device="cuda")))[:, -1]
            sequence, decode = tokens, StaticDecodeStep(small, state, 2) if graph else None
            worst = 0.0
            for _ in range(6):
                full = small(sequence)[:, -1]
                worst = max(worst, ((logits - full).abs().max() / full.abs().max()).item())
                chosen = logits.argmax(-1)
                sequence = torch.cat([sequence, chosen[:, None]], 1)
                step = state.step(torch.ones(2, 1, dtype=torch.bool, device="cuda"))
                logits = decode(chosen[:, None], step) if graph else small(chosen[:, None], step=step)[:, -1]
            assert worst < 1e-3, worst
            print(f"check ({'graph' if graph else 'eager'}, fp32, 4 layers): cached logits vs full forward, max "
                  f"relative difference {worst:.2g}", flush=True)
    del small
    torch.cuda.empty_cache()


def main() -> None:
    config = load_model_config("experiments/presets/motif-2-12.7b.yaml")
    with torch.device("meta"):
        model = MotifForCausalLM(config)
    materialize(model, torch.device("cuda"), 0)
    cast_for_inference(model, torch.bfloat16)
    model.eval()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    bandwidth = copy_bandwidth()
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}; 12.7B preset, {weight_bytes / 1e9:.1f} GB "
          f"of weights; copy bandwidth {bandwidth / 1e12:.2f} TB/s (read + write)", flush=True)

    check_cached_decoding(config)
    with torch.no_grad():
        prefill = torch.randint(0, config.vocab_size, (1, 4096), device="cuda")
        ms = median_ms(lambda: model.model(prefill), repeats=5, warmup=2)
        print(f"prefill 4,096 tokens (batch 1): {ms:.1f} ms = {4096 / ms * 1e3:,.0f} tokens/s", flush=True)

    layer_cache_bytes_per_token = sum(
        (kh * kd + vh * vd) * 2 for kh, kd, vh, vd in [layer.self_attn.cache_layout() for layer in model.model.layers])
    print("| batch | decode | ms/step | tokens/s | floor ms/step | floor / step |")
    print("|---|---|---|---|---|---|")
    for variant in ("eager", "CUDA graph", "compiled blocks + CUDA graph"):
        if variant.startswith("compiled"):
            for layer in model.model.layers:
                layer.compile()
        for batch in (1, 64):
            cache_read = batch * (PROMPT + NEW // 2) * layer_cache_bytes_per_token  # the cache half full on average
            floor_s = (weight_bytes + cache_read) / bandwidth
            started = time.perf_counter()
            step = decode_run(model, batch, graph=variant != "eager")["step_s"]
            print(f"| {batch} | {variant} | {step * 1e3:.2f} | {batch / step:,.1f} | {floor_s * 1e3:.2f} | "
                  f"{floor_s / step:.0%} | ({time.perf_counter() - started:.0f} s with warm-up)", flush=True)
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
