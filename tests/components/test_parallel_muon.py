"""Parallel Muon on FSDP2 shards (2 and 4 gloo processes on CPU) against single-process MuonClip.

Tolerance: exactly zero. Momentum, Nesterov and the weight update are elementwise, so on a row shard they give
the same bits as on the full matrix; the owner rank runs the same bf16 Newton-Schulz on the same full matrix
(the shards travel in bf16, the dtype the iteration starts by casting to). Any layout slip (a wrong owner, a
shard in the wrong row block, a matrix whose rows do not divide by the world size) changes whole rows, which no
tolerance would hide either.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from motif_cli import REPO

WORKER = REPO / "tests" / "distributed" / "parallel_muon_worker.py"


def uneven(world: int) -> list[tuple[int, int]]:
    """The worker's matrix shapes whose rows do not divide by ``world``."""
    spec = importlib.util.spec_from_file_location("parallel_muon_worker", WORKER)
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)
    return [shape for shape in worker.SHAPES if shape[0] % world]


@pytest.mark.parametrize("world", [2, 4])
def test_parallel_muon_equals_single_process_and_checkpoints_through_dcp(world, tmp_path):
    assert uneven(world), "the shapes must include row counts that do not divide by the world size"
    result = subprocess.run([sys.executable, str(WORKER), str(world), str(tmp_path / "checkpoint")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("REPORT "))
    report = json.loads(line[len("REPORT "):])
    assert report == {"sharded": True, "parallel_vs_single_process": 0.0, "gather_all_vs_single_process": 0.0,
                      "momentum_sharded_like_param": True, "restored_vs_continued": 0.0}
    assert list(Path(tmp_path / "checkpoint").glob("*.distcp"))
