"""The ``motif`` CLI end to end, as a user runs it (subprocesses)."""

import os
import re
import shutil

import pytest
import torch

import yaml

from components.attention import GroupedDifferentialAttentionConfig
from components.mlp import PolyNormMLPConfig
from components.model import ModelConfig
from components.model_size import model_size
from components.optim.schedules import WarmupStableDecayLR
from motif_cli import QUICKSTART, REPO, TINY, run_motif, run_motif_in_process, scalars, tiny_run_args

STEPS = 40


@pytest.fixture(scope="module")
def fit_run(tmp_path_factory, corpus_cache):
    tmp = tmp_path_factory.mktemp("fit")
    result = run_motif(["fit", *tiny_run_args(tmp, corpus_cache, STEPS)], cwd=tmp)
    assert result.returncode == 0, result.stderr[-4000:]
    return tmp, result


def test_fit_trains_and_the_loss_falls(fit_run):
    tmp, _ = fit_run
    loss = scalars(tmp)["train/loss"]
    assert len(loss) >= 4
    assert loss[-1] < loss[0] - 1.0, loss


def test_fit_logs_the_dashboard(fit_run):
    tmp, _ = fit_run
    tags = scalars(tmp)
    for tag in ("train/loss", "train/grad_norm", "val/loss", "val/ppl", "val/loss_code", "val/loss_math",
                "val/loss_prose", "throughput/tokens_per_sec", "curriculum/tokens_seen", "lr-MuonClip/hidden_matrices",
                "model/layer_00/lambda", "model/layer_01/lambda", "model/layer_00/polynorm_w0_cube",
                "model/layer_01/polynorm_bias", "model/layer_00/max_logit", "model/layer_01/qk_clipped_heads", "curriculum/weight/math", "curriculum/tokens_seen/code",
                "curriculum/seq_len", "curriculum/batch_sequences", "curriculum/batch_tokens", "model/parameters",
                "model/non_embedding_parameters", "model/flops_per_token", "throughput/model_tflops_per_device",
                "throughput/step_seconds"):
        assert tag in tags, f"{tag} missing from {sorted(tags)}"
    assert all(v > 0 for v in tags["throughput/tokens_per_sec"])
    assert "throughput/mfu" not in tags and "memory/peak_allocated_gib" not in tags  # GPU-only tags
    assert all(0 < v < 60 for v in tags["throughput/step_seconds"])
    tiny = ModelConfig(**{**yaml.safe_load(TINY.read_text()), "attention": GroupedDifferentialAttentionConfig(
        num_noise_heads=2, signal_noise_ratio=2, head_dim=16), "mlp": PolyNormMLPConfig(intermediate_size=192)})
    size = model_size(tiny, 64)  # the curriculum's longest sequence
    assert tags["model/flops_per_token"] == [float(size.flops_per_token)]
    assert tags["model/non_embedding_parameters"] == [float(size.non_embedding_parameters)]
    assert tags["curriculum/seq_len"][0] == 32 and tags["curriculum/seq_len"][-1] == 64
    assert tags["curriculum/weight/math"][-1] > tags["curriculum/weight/math"][0]
    assert tags["curriculum/tokens_seen"][-1] == sum(tags["curriculum/tokens_seen/" + d][-1] for d in ("code", "math", "prose"))
    lr = tags["lr-MuonClip/hidden_matrices"]
    # the schedule's total_steps is unset in the config: it spans trainer.max_steps (STEPS), whatever that is
    schedule = WarmupStableDecayLR(torch.optim.SGD([torch.zeros(1)], lr=1.0), total_steps=STEPS, warmup_steps=5,
                                   decay_fraction=0.3, final_lr_ratio=0.1)
    assert max(lr) == pytest.approx(3e-3) and lr[-1] == pytest.approx(3e-3 * schedule.multiplier(STEPS - 1))


def test_fit_shows_a_progress_bar_and_saves_its_config(fit_run):
    tmp, result = fit_run
    assert re.search(r"Epoch 0: .*\d+/\d+", result.stderr + result.stdout)
    assert list(tmp.rglob("config.yaml"))
    assert list(tmp.rglob("*.ckpt"))


def test_validate_and_test_subcommands(fit_run, corpus_cache):
    tmp, _ = fit_run
    checkpoint = sorted(tmp.rglob("*.ckpt"))[-1]
    for command, key in (("validate", "val/loss"), ("test", "test/loss")):
        result = run_motif([command, *tiny_run_args(tmp, corpus_cache, STEPS), "--ckpt_path", str(checkpoint)], cwd=tmp)
        assert result.returncode == 0, result.stderr[-4000:]
        assert key in result.stdout


def test_component_override_and_print_config(tmp_path):
    result = run_motif(["fit", "--config", str(QUICKSTART),
                        "--config", str(REPO / "experiments/ablations/mlp/swiglu.yaml"),
                        "--model.transformer.attention=components.attention.GroupedQueryAttentionConfig",
                        "--model.transformer.attention.num_heads=8", "--model.transformer.attention.num_kv_heads=2",
                        "--print_config"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = result.stdout
    assert "class_path: components.attention.GroupedQueryAttentionConfig" in printed
    assert "num_kv_heads: 2" in printed
    assert "class_path: components.mlp.SwiGLUConfig" in printed
    assert "signal_noise_ratio" not in printed


def test_fit_with_muonclip_logs_logits_and_trains(tmp_path, corpus_cache):
    args = ["fit", *tiny_run_args(tmp_path, corpus_cache, 20),
            "--config", str(REPO / "experiments/ablations/optimizer/muonclip.yaml"), "--trainer.limit_val_batches=0"]
    result = run_motif(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    tags = scalars(tmp_path)
    assert tags["train/loss"][-1] < tags["train/loss"][0] - 0.5
    assert "lr-MuonClip/hidden_matrices" in tags and "model/layer_01/qk_clipped_heads" in tags
    assert all(0 < v < 100 for v in tags["model/layer_00/max_logit"])


def test_help_lists_the_subcommands_that_work_with_documented_fields(tmp_path):
    result = run_motif(["--help"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "{fit,validate,test,prepare,convert,generate,eval,grow,sft,ablate}" in result.stdout
    assert "predict" not in result.stdout
    assert "args parameter is intended" not in result.stderr  # LightningCLI's warning when given args twice
    fit_help = run_motif_in_process(["fit", "--help"], tmp_path).stdout
    assert "--model.transformer.norm_kernel {auto,triton,reference}" in fit_help  # choices of Literal fields
    assert "--model.on_nonfinite {skip,stop}" in fit_help
    assert "The fused residual add + RMSNorm after attention" in fit_help  # the field's attribute docstring
    assert "What a non-finite loss or gradient norm does" in fit_help  # MotifLM's Args
    prepare_help = run_motif_in_process(["prepare", "--help"], tmp_path).stdout
    assert "Share of each domain's documents held out for validation" in " ".join(prepare_help.split())
    named_files = re.findall(r"experiments/[\w/.-]+\.yaml", re.sub(r"-\n\s*", "-", prepare_help))
    assert named_files and all((REPO / name).is_file() for name in named_files), named_files
    grow_help = " ".join(run_motif_in_process(["grow", "--help"], tmp_path).stdout.split())
    assert "--growth.noise" in grow_help and "Symmetry-breaking noise on the cloned matrices" in grow_help


def test_ablation_files_change_only_the_swapped_component(tmp_path):
    """Stacked on a preset, an MLP or attention ablation keeps the preset's sizes (FFN width, head_dim)."""
    result = run_motif(["fit", "--config", str(QUICKSTART), "--model.transformer", str(REPO / "experiments/presets/motif-125m.yaml"),
                        "--config", str(REPO / "experiments/ablations/mlp/swiglu.yaml"),
                        "--config", str(REPO / "experiments/ablations/attention/gqa.yaml"), "--print_config"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    printed = result.stdout
    assert "class_path: components.mlp.SwiGLUConfig" in printed and "intermediate_size: 2048" in printed
    assert "class_path: components.attention.GroupedQueryAttentionConfig" in printed and "head_dim: 64" in printed


def test_checkpoints_live_in_the_run_folder_and_last_continues_the_newest_run(fit_run, tmp_path, corpus_cache):
    """The quickstart's checkpoints go to its run folder (one per logger version); ``--ckpt_path last``
    continues the newest run there instead of opening a new version."""
    source, _ = fit_run
    shutil.copytree(source, tmp_path / "run", symlinks=True)
    run = tmp_path / "run"
    checkpoints = run / "tensorboard" / "version_0" / "checkpoints"
    assert os.path.realpath(checkpoints / "last.ckpt").endswith(f"step={STEPS}.ckpt")
    runs_before = sorted(p.name for p in (run / "tensorboard").iterdir())  # validate/test runs may have logged too
    result = run_motif(["fit", *tiny_run_args(run, corpus_cache, STEPS + 2), "--ckpt_path", "last"], cwd=run)
    assert result.returncode == 0, result.stderr[-4000:]
    assert sorted(p.name for p in (run / "tensorboard").iterdir()) == runs_before  # no new run folder
    assert os.path.realpath(checkpoints / "last.ckpt").endswith(f"step={STEPS + 2}.ckpt")
    assert len(list((run / "tensorboard" / "version_0").glob("events.out.tfevents.*"))) == 2  # both runs log there


def test_a_limited_validation_reads_the_same_windows_whatever_the_workers(fit_run, corpus_cache):
    """``limit_val_batches`` takes the first batches of each domain in index order: the same windows, so the same
    loss, with 0 or 2 loader workers (bit for bit: the same fp32 computation on the same tokens)."""
    tmp, _ = fit_run
    checkpoint = sorted(tmp.rglob("step=*.ckpt"))[-1]
    losses = []
    for workers in (0, 2):
        result = run_motif(["validate", *tiny_run_args(tmp, corpus_cache, STEPS), "--ckpt_path", str(checkpoint),
                            "--trainer.limit_val_batches=3", f"--data.init_args.num_workers={workers}"], cwd=tmp)
        assert result.returncode == 0, result.stderr[-3000:]
        losses.append(re.search(r"val/loss\W+([0-9.]+)", result.stdout).group(1))
    assert losses[0] == losses[1], losses
