"""Decoding at the 12.7B shapes on one GPU: all 40 layers in bf16 (25.4 GB of weights), random weights.

    python -m benchmarks.decode_bench

Checks first that cached decoding (eager and replayed as a CUDA graph) gives the logits of a full forward on a
short sequence. Then: prefill tokens/s of one 4,096-token prompt; decode tokens/s for a 512-token prompt and 256
new tokens at batch 1 and 64, eager and with each decode step replayed as a CUDA graph. The floor of a decode
step is reading every weight and the cache filled so far once, at the device copy bandwidth measured in the
same run; the tables give tokens/s against that floor.
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

    with torch.no_grad():  # correctness: cached (eager and graphed) against full forwards, 6 steps
        tokens = torch.randint(0, config.vocab_size, (2, 40), device="cuda")
        for graph in (False, True):
            state = model.decoding_state(2, 48)
            logits = model(tokens, step=state.step(torch.ones(2, 40, dtype=torch.bool, device="cuda")))[:, -1]
            sequence, decode = tokens, StaticDecodeStep(model, state, 2) if graph else None
            for _ in range(6):
                full = model(sequence)[:, -1]
                error = ((logits.float() - full.float()).abs().max() / full.float().abs().max()).item()
                assert error < 0.05, error  # bf16: the two paths round differently
                chosen = logits.argmax(-1)
                sequence = torch.cat([sequence, chosen[:, None]], 1)
                step = state.step(torch.ones(2, 1, dtype=torch.bool, device="cuda"))
                logits = decode(chosen[:, None], step) if graph else model(chosen[:, None], step=step)[:, -1]
            print(f"check ({'graph' if graph else 'eager'}): cached logits vs full forward, max relative difference "
                  f"{error:.3g} (bf16)", flush=True)

        prefill = torch.randint(0, config.vocab_size, (1, 4096), device="cuda")
        ms = median_ms(lambda: model.model(prefill), repeats=5, warmup=2)
        print(f"prefill 4,096 tokens (batch 1): {ms:.1f} ms = {4096 / ms * 1e3:,.0f} tokens/s", flush=True)

    layer_cache_bytes_per_token = sum(
        (kh * kd + vh * vd) * 2 for kh, kd, vh, vd in [layer.self_attn.cache_layout() for layer in model.model.layers])
    print("| batch | decode | ms/step | tokens/s | floor ms/step | tokens/s / floor |")
    print("|---|---|---|---|---|---|")
    for batch in (1, 64):
        cache_read = batch * (PROMPT + NEW // 2) * layer_cache_bytes_per_token  # the cache filled halfway on average
        floor_s = (weight_bytes + cache_read) / (bandwidth / 2)  # copy bandwidth counts read + write
        for graph in (False, True):
            result = decode_run(model, batch, graph)
            step = result["step_s"]
            print(f"| {batch} | {'CUDA graph' if graph else 'eager'} | {step * 1e3:.2f} | {batch / step:,.1f} | "
                  f"{floor_s * 1e3:.2f} | {floor_s / step:.0%} |", flush=True)
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
