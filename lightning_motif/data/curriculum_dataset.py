"""The training stream: materialises the curriculum plan's windows for one rank and one loader worker."""

import torch
from litdata import StreamingDataset
from litdata.streaming.item_loader import TokensLoader
from torch.utils.data import IterableDataset, get_worker_info

from lightning_motif.data.curriculum import CurriculumPlan


class CurriculumDataset(IterableDataset):
    """Yields one item per optimizer step for this rank, from step ``start_step`` on::

        {"tokens": int32 (sequences // world_size, seq_len + 1), "micro_batch_size": int, "curriculum": {...}}

    The rank holds the ``rank``-th contiguous slice of the step's global sequences, so ranks never share a
    sample; with K loader workers, worker k builds steps start_step + k, start_step + k + K, ..., which the
    DataLoader returns in order. ``micro_batch_size`` = max(1, micro_batch_tokens // seq_len) sequences bounds
    the activation memory of one forward pass while the batch ramps. ``curriculum`` carries the step's
    schedule values for logging.
    """

    def __init__(self, domain_dirs: dict[str, str], plan: CurriculumPlan, rank: int, world_size: int,
                 start_step: int, micro_batch_tokens: int) -> None:
        super().__init__()
        self.domain_dirs = domain_dirs
        self.plan = plan
        self.rank, self.world_size = rank, world_size
        self.start_step = start_step
        self.micro_batch_tokens = micro_batch_tokens

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        pages = {domain: StreamingDataset(self.domain_dirs[domain], item_loader=TokensLoader(block_size=self.plan.page_tokens))
                 for domain in self.plan.domains}
        names = self.plan.domains
        for samples in self.plan.steps(self.start_step + worker, stride=workers):
            per_rank = samples.sequences // self.world_size
            mine = slice(self.rank * per_rank, (self.rank + 1) * per_rank)
            length = samples.seq_len + 1
            windows = [pages[names[d]][int(p)][o:o + length]
                       for d, p, o in zip(samples.domain[mine], samples.page[mine], samples.offset[mine])]
            yield {
                "tokens": torch.stack(windows),
                "micro_batch_size": max(1, self.micro_batch_tokens // samples.seq_len),
                "curriculum": {
                    "step": samples.step,
                    "seq_len": samples.seq_len,
                    "global_sequences": samples.sequences,
                    "tokens_before": samples.tokens_before,
                    "weights": dict(zip(names, samples.weights.tolist())),
                    "domain_tokens_seen": dict(zip(names, samples.domain_tokens_seen.tolist())),
                },
            }
