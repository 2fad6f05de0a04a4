"""The curriculum stream on real shards: ranks split each step, workers and restarts change nothing."""

import itertools
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from lightning_motif.data.curriculum_dataset import CurriculumDataset


def stream(datamodule, rank=0, world_size=1, start=0, workers=0, steps=6):
    dataset = CurriculumDataset({d: datamodule._domain_dir("train", d) for d in datamodule.schedule.domains},
                                datamodule.plan(), rank, world_size, start, datamodule.micro_batch_tokens)
    return list(itertools.islice(DataLoader(dataset, batch_size=None, num_workers=workers), steps))


def test_ranks_hold_disjoint_slices_that_make_up_the_step(embedded_datamodule):
    whole = stream(embedded_datamodule, steps=4)
    halves = [stream(embedded_datamodule, rank=r, world_size=2, steps=4) for r in (0, 1)]
    for step, first, second in zip(whole, *halves):
        assert torch.equal(torch.cat([first["tokens"], second["tokens"]]), step["tokens"])
        assert first["curriculum"] == second["curriculum"] == step["curriculum"]


def test_loader_workers_and_restarts_read_the_same_stream(embedded_datamodule):
    reference = stream(embedded_datamodule, steps=8)
    for workers in (1, 2, 3):
        for a, b in zip(reference, stream(embedded_datamodule, workers=workers, steps=8)):
            assert torch.equal(a["tokens"], b["tokens"]) and a["curriculum"] == b["curriculum"]
    for a, b in zip(reference[5:], stream(embedded_datamodule, start=5, workers=2, steps=3)):
        assert torch.equal(a["tokens"], b["tokens"]) and a["curriculum"]["step"] == b["curriculum"]["step"] == a["curriculum"]["step"]


def test_steps_follow_the_schedule(embedded_datamodule):
    steps = stream(embedded_datamodule, steps=40)
    lengths = [s["tokens"].shape[1] - 1 for s in steps]
    assert lengths[0] == 32 and lengths[-1] == 64
    for s in steps:
        info = s["curriculum"]
        assert s["tokens"].shape == (info["global_sequences"], info["seq_len"] + 1)
        assert info["global_sequences"] % 2 == 0  # batch_multiple
        assert s["micro_batch_size"] == max(1, embedded_datamodule.micro_batch_tokens // info["seq_len"])


def test_a_new_run_from_start_step_reads_the_stream_where_an_earlier_run_stopped(embedded_datamodule):
    """Training a grown model from another run's weights (``start_step``) continues that run's sample stream."""
    from lightning_motif.data.datamodule import EmbeddedCorpusDataModule

    later = EmbeddedCorpusDataModule(embedded_datamodule.schedule, tokenizer_vocab_size=512, bytes_per_domain=200_000,
                                     cache_dir=str(Path(embedded_datamodule.data_dir).parent), start_step=5)
    assert later.data_dir == embedded_datamodule.data_dir
    first = next(iter(later.train_dataloader()))
    reference = stream(embedded_datamodule, steps=6)[5]
    assert torch.equal(first["tokens"], reference["tokens"]) and first["curriculum"]["step"] == 5
