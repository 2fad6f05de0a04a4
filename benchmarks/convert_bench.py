"""``motif convert`` at the 12.7B shapes: import of a synthetic checkpoint in the released layout (random bf16
weights, 643 tensors, 5 GB safetensors shards, about 25 GB) and export back, against the disk's own bandwidth.

    python -m benchmarks.convert_bench [--root /tmp/motif-convert]

Measures, in one run on one machine: the disk's sequential write and read bandwidth (an 8 GB file, fsync'd,
then read back after dropping it from memory where the OS allows); seconds and GB/s of `motif convert import`
and `motif convert export` (each a separate process); their peak anonymous host memory (RssAnon sampled every
0.1 s: memory-mapped checkpoint pages are file cache and do not count). Checks that the exported
files hold the generated tensors bit for bit. Needs about 55 GB of free disk (the generated folder is deleted
before the export).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from hf_synthetic import released_config  # noqa: E402

GB = 1e9


def disk_bandwidth(folder: Path, size: int = 8 * 10**9) -> tuple[float, float]:
    """(write GB/s with fsync, read GB/s) of one sequential file."""
    path, block = folder / "bandwidth.bin", os.urandom(64 << 20)
    started = time.perf_counter()
    with open(path, "wb") as handle:
        for _ in range(size // len(block)):
            handle.write(block)
        handle.flush()
        os.fsync(handle.fileno())
    write = size / (time.perf_counter() - started) / GB
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    started = time.perf_counter()
    with open(path, "rb") as handle:
        while handle.read(64 << 20):
            pass
    read = size / (time.perf_counter() - started) / GB
    path.unlink()
    return write, read


def generate(folder: Path) -> dict[str, int]:
    """The 12.7B released layout with random bf16 weights (lambda vectors fp32), 5 GB shards; returns sizes."""
    config = released_config(hidden=4096, layers=40, ffn=16384, noise_heads=8, ratio=4, head_dim=128, vocab=219520)
    config.update(rope_theta=1e6, max_position_embeddings=32768)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    shapes = {"model.embed_tokens.weight": (219520, 4096), "model.norm.weight": (4096,), "lm_head.weight": (219520, 4096)}
    for i in range(40):
        p = f"model.layers.{i}."
        shapes.update({p + "self_attn.q_proj.weight": (5120, 4096), p + "self_attn.k_proj.weight": (2048, 4096),
                       p + "self_attn.v_proj.weight": (2048, 4096), p + "self_attn.o_proj.weight": (4096, 8192),
                       **{p + f"self_attn.lambda_{n}": (128,) for n in ("q1", "k1", "q2", "k2")},
                       p + "self_attn.subln.weight": (256,), p + "mlp.gate_proj.weight": (16384, 4096),
                       p + "mlp.up_proj.weight": (16384, 4096), p + "mlp.down_proj.weight": (4096, 16384),
                       p + "mlp.act_fn.weight": (3,), p + "mlp.act_fn.bias": (1,),
                       p + "input_layernorm.weight": (4096,), p + "post_attention_layernorm.weight": (4096,)})
    generator = torch.Generator("cuda").manual_seed(0)
    weight_map, shard, shard_bytes, index, sizes = {}, {}, 0, 0, {}

    def flush():
        nonlocal shard, shard_bytes, index
        index += 1
        save_file(shard, str(folder / f"model-{index:05d}-of-XXXXX.safetensors"), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, index))
        shard, shard_bytes = {}, 0

    for name, shape in shapes.items():
        dtype = torch.float32 if "lambda_" in name else torch.bfloat16
        tensor = (torch.randn(shape, device="cuda", generator=generator) * 0.02).to(dtype).cpu()
        if shard and shard_bytes + tensor.nbytes > 5 * GB:
            flush()
        shard[name], sizes[name] = tensor, tensor.nbytes
        shard_bytes += tensor.nbytes
    flush()
    for i in range(1, index + 1):  # the released names say how many shards there are
        os.replace(folder / f"model-{i:05d}-of-XXXXX.safetensors", folder / f"model-{i:05d}-of-{index:05d}.safetensors")
    weight_map = {name: f"model-{i:05d}-of-{index:05d}.safetensors" for name, i in weight_map.items()}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": sum(sizes.values())},
                                                                     "weight_map": weight_map}))
    return sizes


def timed_process(command: list[str]) -> dict:
    """Run ``command``; seconds and its peak RssAnon (sampled)."""
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak_anon = [0]

    def sample():
        while process.poll() is None:
            try:
                status = Path(f"/proc/{process.pid}/status").read_text()
                anon = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("RssAnon:"))
                peak_anon[0] = max(peak_anon[0], anon * 1024)
            except (OSError, StopIteration):
                pass
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    started = time.perf_counter()
    sampler.start()
    output, _ = process.communicate()
    seconds = time.perf_counter() - started
    sampler.join()
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{output[-3000:]}")
    return {"seconds": seconds, "peak_anon_gb": peak_anon[0] / GB}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default="/tmp/motif-convert")
    args = parser.parse_args()
    root = Path(args.root)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    write_bw, read_bw = disk_bandwidth(root)
    print(f"disk: sequential write {write_bw:.2f} GB/s (fsync), read {read_bw:.2f} GB/s", flush=True)
    started = time.perf_counter()
    sizes = generate(root / "released")
    total = sum(sizes.values())
    print(f"generated the 12.7B layout: {len(sizes)} tensors, {total / GB:.1f} GB in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    motif = [sys.executable, "-m", "lightning_motif.cli", "convert"]
    imported = timed_process(motif + ["import", "--source", str(root / "released"), "--output", str(root / "imported"),
                                      "--verbose", "false"])
    print(f"import: {imported['seconds']:.1f} s = {total / GB / imported['seconds']:.2f} GB/s (read + write of "
          f"{total / GB:.1f} GB); peak anonymous memory {imported['peak_anon_gb']:.1f} GB", flush=True)
    reference = {}
    for file in sorted((root / "released").glob("*.safetensors")):  # a sample to compare bit for bit afterwards
        with safe_open(str(file), framework="pt") as handle:
            for name in list(handle.keys())[:3]:
                reference[name] = handle.get_tensor(name).clone()  # no mapping that keeps the deleted file
    shutil.rmtree(root / "released")
    exported = timed_process(motif + ["export", "--source", str(root / "imported" / "model.ckpt"), "--output",
                                      str(root / "exported"), "--verbose", "false"])
    print(f"export: {exported['seconds']:.1f} s = {total / GB / exported['seconds']:.2f} GB/s; peak anonymous memory "
          f"{exported['peak_anon_gb']:.1f} GB (target < 8 GB)", flush=True)
    index = json.loads((root / "exported" / "model.safetensors.index.json").read_text())
    assert len(index["weight_map"]) == 643, len(index["weight_map"])
    for name, tensor in reference.items():
        with safe_open(str(root / "exported" / index["weight_map"][name]), framework="pt") as handle:
            assert torch.equal(handle.get_tensor(name), tensor), name
    shards = sorted((root / "exported").glob("*.safetensors"))
    print(f"exported {len(shards)} shards, largest {max(f.stat().st_size for f in shards) / GB:.2f} GB; "
          f"{len(reference)} sampled tensors equal the generated ones bit for bit", flush=True)
    print("RESULT " + json.dumps({"disk_write_gbs": write_bw, "disk_read_gbs": read_bw, "total_gb": total / GB,
                                  "import": imported, "export": exported}), flush=True)
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
