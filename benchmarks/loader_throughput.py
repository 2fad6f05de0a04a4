"""Curriculum loader throughput on CPU: tokens/s delivered by one process at seq 4096.

    .venv/bin/python benchmarks/loader_throughput.py [--tokens-per-domain 33554432] [--steps 20] [--repeats 5]

Writes three domains of random int32 tokens as litdata shards under a temporary folder, then times the
training stream (``CurriculumDataset``, one process, no loader workers) over a schedule that mixes the
three domains at seq 4096 with 64 sequences (262,144 tokens) per step, and the replay cost of a resume.
"""

import argparse
import statistics
import tempfile
import time
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from litdata import optimize
from litdata.streaming.item_loader import TokensLoader

from lightning_motif.data.curriculum import CurriculumPlan, CurriculumSchedule, MixtureMilestone, ValueMilestone
from lightning_motif.data.curriculum_dataset import CurriculumDataset

DOMAINS = ("web", "code", "math")
SEQ_LEN = 4096


class RandomDocuments:
    def __init__(self, vocab: int, tokens_per_item: int) -> None:
        self.vocab, self.tokens_per_item = vocab, tokens_per_item

    def __call__(self, index: int):
        rng = np.random.default_rng(index)
        for _ in range(self.tokens_per_item // 2048):
            yield torch.from_numpy(rng.integers(0, self.vocab, 2048, dtype=np.int32))


def write_domains(root: Path, tokens_per_domain: int) -> dict[str, str]:
    dirs = {}
    for i, domain in enumerate(DOMAINS):
        dirs[domain] = str(root / domain)
        items = 16
        optimize(fn=RandomDocuments(219_520, tokens_per_domain // items), inputs=list(range(i * items, (i + 1) * items)),
                 output_dir=dirs[domain], chunk_size=1 << 24, item_loader=TokensLoader(), num_workers=2,
                 mode="overwrite", verbose=False, start_method="fork")
    return dirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens-per-domain", type=int, default=1 << 25)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    schedule = CurriculumSchedule(
        mixture=[MixtureMilestone(tokens=0, weights={"web": 0.7, "code": 0.2, "math": 0.1}),
                 MixtureMilestone(tokens=1e9, weights={"web": 0.4, "code": 0.3, "math": 0.3})],
        seq_len=[ValueMilestone(tokens=0, value=SEQ_LEN)],
        batch_tokens=[ValueMilestone(tokens=0, value=64 * SEQ_LEN)],
    )
    with tempfile.TemporaryDirectory() as tmp:
        dirs = write_domains(Path(tmp), args.tokens_per_domain)
        from litdata import StreamingDataset

        pages = {d: len(StreamingDataset(dirs[d], item_loader=TokensLoader(block_size=SEQ_LEN + 1))) for d in DOMAINS}
        plan = CurriculumPlan(schedule, pages, seed=0)
        rates = []
        for repeat in range(args.repeats + 1):
            dataset = CurriculumDataset(dirs, plan, rank=0, world_size=1, start_step=repeat * args.steps,
                                        micro_batch_tokens=16384)
            stream = iter(dataset)
            next(stream)  # opens the shards
            start = time.perf_counter()
            tokens = sum(step["tokens"][:, :-1].numel() for step in islice(stream, args.steps))
            elapsed = time.perf_counter() - start
            if repeat:  # the first pass warms the page cache
                rates.append(tokens / elapsed)
        start = time.perf_counter()
        next(iter(plan.steps(start=10_000)))
        replay = time.perf_counter() - start
    print(f"domains: {len(DOMAINS)} x {args.tokens_per_domain:,} tokens; seq {SEQ_LEN}; 64 sequences per step")
    print(f"tokens/s per process, median of {args.repeats} x {args.steps} steps: {statistics.median(rates) / 1e6:.1f} M "
          f"(min {min(rates) / 1e6:.1f} M, max {max(rates) / 1e6:.1f} M)")
    print(f"resume replay to step 10,000 (2.6B tokens): {replay:.2f} s")


if __name__ == "__main__":
    main()
