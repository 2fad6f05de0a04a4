"""``motif ablate`` end to end on CPU: a tiny grid (2 learning rates, 2 variants, 2 seeds: 5 runs of 10 steps) is
trained, continued and reported, and the report's numbers are checked against the runs' logged scalars."""

import json
import math
import os

import pytest

from lightning_motif.ablation.logs import HPARAMS_FOLDER, RUN_RECORD
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from motif_cli import REPO, run_motif_in_process

GRID = REPO / "tests" / "configs" / "ablation_grid.yaml"
RUNS = ["motif-lr0.001-seed0", "motif-lr0.003-seed0", "motif-lr0.003-seed1", "gqa-lr0.003-seed0", "gqa-lr0.003-seed1"]


def _ablate(direction: str, output, cache, *extra: str):
    fit_args = ["--data.init_args.cache_dir", str(cache), "--trainer.max_steps", "10",
                "--trainer.val_check_interval", "5", "--trainer.limit_val_batches", "2",
                "--trainer.log_every_n_steps", "2", "--model.lr_scheduler.init_args.warmup_steps", "2"]
    return run_motif_in_process(["ablate", direction, "--config", str(GRID), "--output_dir", str(output),
                                 "--report_dir", str(output / "report"), "--fit_args", json.dumps(fit_args), *extra],
                                cwd=REPO)


@pytest.fixture(scope="module")
def grid(tmp_path_factory, corpus_cache):
    output = tmp_path_factory.mktemp("ablation") / "runs"
    result = _ablate("run", output, corpus_cache)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return output, result


def scalars(run_dir) -> dict[str, list[float]]:
    """The run's own scalars, read straight from the event files in its folder (not the report's hparams/)."""
    accumulator = EventAccumulator(str(run_dir))
    accumulator.Reload()
    return {tag: [e.value for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def _last_val(run_dir, tag="val/loss") -> float:
    return scalars(run_dir)[tag][-1]


def test_every_run_has_its_own_folder_and_record(grid):
    output, result = grid
    assert sorted(p.name for p in output.iterdir()) == sorted([*RUNS, "report"])
    for name in RUNS:
        record = json.loads((output / name / RUN_RECORD).read_text())
        assert record["exit_code"] == 0 and record["seconds"] > 0
        assert (output / name / "fit.log").stat().st_size > 0
        assert f"[ablate] {name}: val loss" in result.stdout
    assert "best learning rates: {'muonclip': " in result.stdout


def test_seeds_change_the_run_and_the_variant_changes_the_model(grid):
    output, _ = grid
    motif, gqa = scalars(output / "motif-lr0.003-seed0"), scalars(output / "gqa-lr0.003-seed0")
    assert motif["val/loss"] != scalars(output / "motif-lr0.003-seed1")["val/loss"]
    assert motif["model/non_embedding_parameters"] != gqa["model/non_embedding_parameters"]


def test_the_sweep_picks_the_lower_loss(grid):
    output, _ = grid
    summary = json.loads((output / "report" / "summary.json").read_text())
    swept = {lr: _last_val(output / f"motif-lr{lr}-seed0") for lr in ("0.001", "0.003")}
    assert summary["sweeps"]["muonclip"] == pytest.approx(swept, rel=0, abs=0)
    assert summary["best_learning_rates"]["muonclip"] == float(min(swept, key=swept.get))


def test_the_report_numbers_are_the_logged_scalars(grid):
    output, _ = grid
    summary = json.loads((output / "report" / "summary.json").read_text())
    report = (output / "report" / "REPORT.md").read_text()
    lr = f"{summary['best_learning_rates']['muonclip']:g}"
    for variant in ("motif", "gqa"):
        row, runs = summary["variants"][variant], [output / f"{variant}-lr{lr}-seed{seed}" for seed in (0, 1)]
        assert row["final_val_loss"] == [_last_val(run) for run in runs]
        for domain in ("code", "math", "prose"):
            assert row["per_domain"][domain] == [_last_val(run, f"val/loss_{domain}") for run in runs]
        logged = [scalars(run)["throughput/tokens_per_sec"] for run in runs]
        assert row["tokens_per_sec"] == pytest.approx([sum(s[len(s) // 4:]) / len(s[len(s) // 4:]) for s in logged])
        assert row["flops_per_token"] == scalars(runs[0])["model/flops_per_token"][0]
        mean = sum(row["final_val_loss"]) / 2
        std = abs(row["final_val_loss"][0] - row["final_val_loss"][1]) / math.sqrt(2)
        assert f"{mean:.4f} ± {std:.4f}" in report
    differences = [_last_val(output / f"gqa-lr{lr}-seed{s}") - _last_val(output / f"motif-lr{lr}-seed{s}") for s in (0, 1)]
    assert summary["variants"]["gqa"]["difference_to_reference"] == pytest.approx(differences, abs=1e-12)


def test_the_report_has_plots_and_a_tensorboard_hparams_view(grid):
    output, _ = grid
    for plot in ("loss_vs_tokens.png", "final_loss.png"):
        assert (output / "report" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in RUNS:
        assert list((output / name / HPARAMS_FOLDER).glob("events.out.tfevents.*"))


def test_a_finished_grid_is_not_run_again_and_an_interrupted_run_starts_over(grid, corpus_cache):
    output, _ = grid
    records = {name: (output / name / RUN_RECORD).stat().st_mtime_ns for name in RUNS}
    again = _ablate("run", output, corpus_cache)
    assert again.returncode == 0 and "[ablate] motif-" not in again.stdout
    assert {name: (output / name / RUN_RECORD).stat().st_mtime_ns for name in RUNS} == records

    interrupted = output / "gqa-lr0.003-seed1"
    (interrupted / RUN_RECORD).unlink()  # as a run killed before motif fit returned leaves it
    (interrupted / "half-written").write_text("x")
    resumed = _ablate("run", output, corpus_cache)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "1 runs to go (2 already done)" in resumed.stdout and "[ablate] gqa-lr0.003-seed1: val loss" in resumed.stdout
    assert not (interrupted / "half-written").exists()
    assert {n: (output / n / RUN_RECORD).stat().st_mtime_ns for n in RUNS if n != interrupted.name} == \
        {n: t for n, t in records.items() if n != interrupted.name}


def test_a_time_limit_leaves_the_rest_for_the_next_call(tmp_path, corpus_cache):
    result = _ablate("run", tmp_path / "runs", corpus_cache, "--start_runs_for_s", "0")
    assert result.returncode == 0
    assert "stopped starting runs after 0 s; run the same command to continue" in result.stdout
    assert not [p for p in (tmp_path / "runs").iterdir() if p.name != "report"]


def test_a_missing_config_file_stops_before_any_run(tmp_path, corpus_cache):
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(GRID.read_text().replace("experiments/ablations/attention/gqa.yaml", "nowhere/gqa.yaml"))
    result = run_motif_in_process(["ablate", "run", "--config", str(grid_file), "--output_dir", str(tmp_path / "runs")],
                                  cwd=REPO)
    assert result.returncode == 2
    assert "AblationConfig.variants.gqa.configs = 'nowhere/gqa.yaml': no such file" in result.stderr
    assert not (tmp_path / "runs").exists()
