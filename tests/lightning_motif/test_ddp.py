"""Two-process data-parallel training on CPU (gloo) through the same config: scaling out needs no code change."""

import pytest

from motif_cli import REPO, run_motif, scalars, tiny_run_args


STEPS = 10


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, corpus_cache):
    tmp = tmp_path_factory.mktemp("ddp")
    args = ["fit", *tiny_run_args(tmp, corpus_cache, STEPS), "--trainer.strategy=ddp", "--trainer.devices=2",
            "--trainer.accelerator=cpu"]
    return tmp, run_motif(args, cwd=tmp)


def test_fit_with_ddp_on_two_cpu_processes(two_processes):
    tmp, result = two_processes
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in result.stdout + result.stderr
    tags = scalars(tmp)
    assert len(tags["train/loss"]) >= 2 and "val/loss" in tags


def test_fit_with_ddp_and_muonclip_reduces_logit_maxima_across_ranks(tmp_path, corpus_cache):
    """QK-clip all-reduces each layer's maxima across ranks inside the optimizer step: two processes must not
    hang and must log the maxima."""
    args = ["fit", *tiny_run_args(tmp_path, corpus_cache, 10), "--trainer.strategy=ddp", "--trainer.devices=2",
            "--trainer.accelerator=cpu", "--trainer.limit_val_batches=0",
            "--config", str(REPO / "experiments/ablations/optimizer/muonclip.yaml")]
    result = run_motif(args, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    tags = scalars(tmp_path)
    assert "model/layer_00/max_logit" in tags and "model/layer_01/qk_clipped_heads" in tags


def test_two_nodes_through_torchrun_train_like_two_local_processes(tmp_path, corpus_cache, two_processes):
    """The multi-node launch of the README, on one machine: two torchrun "nodes" of one process each
    (``--trainer.num_nodes 2``) train as one node with two processes: same ranks, same data, the same losses up to
    fp32 summation order (torchrun runs each process with one intra-op thread, which reorders CPU matmul sums by
    about 1e-7 relative per operation; 1e-4 after a few steps leaves a margin, far below what one wrong sample or
    rank does)."""
    import os
    import socket
    import subprocess
    import sys

    from motif_cli import motif_command

    local, result = two_processes
    assert result.returncode == 0, result.stderr[-4000:]

    nodes = tmp_path / "nodes"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ["fit", *tiny_run_args(nodes, corpus_cache, STEPS), "--trainer.strategy=ddp", "--trainer.accelerator=cpu",
            "--trainer.devices=1", "--trainer.num_nodes=2"]
    launches = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1", f"--node-rank={rank}",
         "--master-addr=127.0.0.1", f"--master-port={port}", motif_command()[0], *args],
        cwd=tmp_path, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True) for rank in (0, 1)]
    outputs = [launch.communicate(timeout=600)[0] for launch in launches]
    assert all(launch.returncode == 0 for launch in launches), outputs[0][-3000:] + outputs[1][-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1]
    for tag in ("train/loss", "val/loss"):
        assert scalars(nodes)[tag] == pytest.approx(scalars(local)[tag], rel=1e-4, abs=0), tag
