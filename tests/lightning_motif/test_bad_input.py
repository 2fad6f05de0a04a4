"""Mistakes a user makes, each given to ``motif`` as a command line where good data and a finished run already
exist: the command stops with exit status 2 and exactly one line (``motif: error: <field> = <value>: <fix>``)
naming the field, prints no traceback, and leaves every file and folder of the workspace as it was (no new run
folder, no touched checkpoint, shard or tokenizer).

The workspace (built once): ``data/`` a prepared copy of the small embedded corpus (and damaged copies of it),
``run/`` a finished tiny run with its checkpoints, ``corpus/`` a dataset made by ``motif prepare`` from ``raw/``,
and bad files (a truncated checkpoint, a YAML file, a YAML with a tab, a truncated tokenizer).
"""

import json
import os
import shutil

import pytest
import yaml

from motif_cli import REPO, TINY_CURRICULUM, run_motif, run_motif_in_process, tiny_run_args

STEPS = 6


def snapshot(root) -> dict[str, tuple]:
    """Every folder and file under ``root``: files by size and modification time."""
    found = {}
    for folder, dirs, files in os.walk(root):
        found[os.path.relpath(folder, root)] = ()
        for name in files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            found[os.path.relpath(path, root)] = (info.st_size, info.st_mtime_ns)
    return found


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, embedded_datamodule, corpus_cache):
    ws = tmp_path_factory.mktemp("workspace")
    shutil.copytree(embedded_datamodule.data_dir, ws / "data")
    for damage in ("missing", "cut"):
        copy = ws / f"data-{damage}-shard"
        shutil.copytree(ws / "data", copy)
        chunk = sorted((copy / "train" / "code").glob("*.bin"))[0]
        if damage == "missing":
            chunk.unlink()
        else:
            chunk.write_bytes(chunk.read_bytes()[:-100])
    (ws / "empty-folder").mkdir()
    schedule = yaml.safe_load(TINY_CURRICULUM.read_text())["data"]["init_args"]
    for name, data_dir in (("data.yaml", ws / "data"), ("data-missing-shard.yaml", ws / "data-missing-shard"),
                           ("data-cut-shard.yaml", ws / "data-cut-shard"), ("data-nowhere.yaml", ws / "nowhere"),
                           ("data-empty.yaml", ws / "empty-folder"), ("data-split-folder.yaml", ws / "data" / "train")):
        (ws / name).write_text(yaml.safe_dump({
            "class_path": "lightning_motif.data.datamodule.CurriculumDataModule",
            "init_args": {"data_dir": str(data_dir), "schedule": schedule["schedule"], "val_seq_len": 64,
                          "micro_batch_tokens": schedule["micro_batch_tokens"], "val_batch_size": 8}}))
    result = run_motif(["fit", *tiny_run_args(ws / "run", corpus_cache, STEPS), "--trainer.limit_val_batches=0"], cwd=ws)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = ws / "run" / "tensorboard" / "version_0" / "checkpoints" / f"step={STEPS}.ckpt"
    (ws / "truncated.ckpt").write_bytes(checkpoint.read_bytes()[:50_000])
    (ws / "not-a-checkpoint.yaml").write_text("model: {}\n")
    (ws / "tabs.yaml").write_text("trainer:\n\tmax_steps: 3\n")
    (ws / "unclosed.yaml").write_text("trainer:\n  max_steps: [3\n")
    (ws / "raw").mkdir()
    (ws / "raw" / "notes.jsonl").write_text("".join(json.dumps({"text": f"note {i} " * 30}) + "\n" for i in range(300)))
    (ws / "prepare.yaml").write_text(yaml.safe_dump({
        "output_dir": str(ws / "corpus"), "domains": {"notes": {"paths": [str(ws / "raw" / "notes.jsonl")]}},
        "vocab_size": 300, "val_fraction": 0.05, "num_workers": 1, "verbose": False}))
    result = run_motif(["prepare", "--config", str(ws / "prepare.yaml")], cwd=ws)
    assert result.returncode == 0, result.stderr[-3000:]
    tokenizer = (ws / "corpus" / "tokenizer.json").read_bytes()
    (ws / "truncated-tokenizer.json").write_bytes(tokenizer[: len(tokenizer) // 2])
    return ws


def fit(ws, *overrides: str) -> list[str]:
    """A tiny fit on the embedded corpus whose run would land in ``run/`` (next to the finished one)."""
    return ["fit", *tiny_run_args(ws / "run", ws.parent / "unused-cache", STEPS), "--data", str(ws / "data.yaml"),
            *overrides]


def checkpoint(ws) -> str:
    return str(ws / "run" / "tensorboard" / "version_0" / "checkpoints" / f"step={STEPS}.ckpt")


CASES = {
    # the model and its components
    "heads-do-not-divide": (lambda ws: fit(ws, "--model.transformer.attention=components.attention.GroupedQueryAttentionConfig",
                                           "--model.transformer.attention.num_heads=6", "--model.transformer.attention.num_kv_heads=4"),
                            "GroupedQueryAttentionConfig.num_kv_heads = 4: must divide num_heads = 6"),
    "diff-heads-do-not-divide": (lambda ws: fit(ws, "--model.transformer.attention=components.attention.DifferentialAttentionConfig",
                                                "--model.transformer.attention.num_heads=3", "--model.transformer.attention.num_kv_heads=2"),
                                 "DifferentialAttentionConfig.num_kv_heads = 2"),
    "ratio-below-one": (lambda ws: fit(ws, "--model.transformer.attention.signal_noise_ratio=0"),
                        "GroupedDifferentialAttentionConfig.signal_noise_ratio = 0"),
    "odd-head-dim": (lambda ws: fit(ws, "--model.transformer.attention.head_dim=15"), "GroupedDifferentialAttentionConfig.head_dim = 15"),
    "unknown-class-path": (lambda ws: fit(ws, "--model.transformer.attention=components.attention.FlashGDAConfig"),
                           "Parser key \"model.transformer.attention\": Problem with given class_path "
                           "'components.attention.FlashGDAConfig'"),
    "unknown-kernel": (lambda ws: fit(ws, "--model.transformer.attention.kernel=fast"),
                       "model.transformer.attention.kernel = 'fast': use one of ['auto', 'triton', 'reference']"),
    "vocab-below-tokenizer": (lambda ws: fit(ws, "--model.transformer.vocab_size=100"),
                              "ModelConfig.vocab_size = 100: smaller than the tokenizer's"),
    "seq-len-above-max-positions": (lambda ws: fit(ws, "--data.init_args.val_seq_len=1024"),
                                    "data.val_seq_len = 1024: exceeds ModelConfig.max_position_embeddings = 256"),
    "curriculum-seq-len-above-max-positions": (lambda ws: fit(ws, "--model.transformer.max_position_embeddings=48"),
                                               "data.schedule.seq_len = 64: exceeds ModelConfig.max_position_embeddings = 48"),
    # the optimizer, the schedule, the run
    "negative-lr-adamw": (lambda ws: fit(ws, "--config", str(REPO / "experiments/ablations/optimizer/adamw.yaml"),
                                         "--model.optimizer.init_args.lr=-1"), "model.optimizer = 'Invalid learning rate: -1.0'"),
    "negative-lr-muonclip": (lambda ws: fit(ws, "--model.optimizer.init_args.lr=-1"), "MuonClip.lr = -1.0: use a non-negative learning rate"),
    "unknown-optimizer": (lambda ws: fit(ws, "--model.optimizer=torch.optim.FancyOpt"), "model.optimizer"),
    "warmup-longer-than-the-run": (lambda ws: fit(ws, "--model.lr_scheduler.init_args.warmup_steps=30"),
                                   "WarmupStableDecayLR.warmup_steps = 30: must be between 0 and total_steps = 6"),
    "warmup-longer-than-the-run-on-two-processes": (  # raised on every rank after the launch: printed once
        lambda ws: fit(ws, "--model.lr_scheduler.init_args.warmup_steps=30", "--trainer.strategy=ddp",
                       "--trainer.devices=2", "--trainer.accelerator=cpu"),
        "WarmupStableDecayLR.warmup_steps = 30: must be between 0 and total_steps = 6"),
    "no-steps": (lambda ws: fit(ws, "--trainer.max_steps=0"), "trainer.max_steps = 0: the curriculum stream has no end"),
    "unknown-nonfinite-policy": (lambda ws: fit(ws, "--model.on_nonfinite=ignore"),
                                 "model.on_nonfinite = 'ignore': use one of ['skip', 'stop']"),
    "unknown-param-dtype": (lambda ws: fit(ws, "--model.parallelism.param_dtype=bf16"),
                            "model.parallelism.param_dtype = 'bf16': use one of ['bfloat16', 'float16', 'float32']"),
    "checkpoint-every-zero-steps": (lambda ws: fit(ws, "--trainer.callbacks.every_n_train_steps=0"),
                                    "MotifCheckpoint.every_n_train_steps = 0"),
    # the data
    "data-dir-missing": (lambda ws: fit(ws, "--data", str(ws / "data-nowhere.yaml")), "data.data_dir = '"),
    "data-dir-empty": (lambda ws: fit(ws, "--data", str(ws / "data-empty.yaml")), "the folder is empty: prepare a dataset there"),
    "data-dir-is-a-split-folder": (lambda ws: fit(ws, "--data", str(ws / "data-split-folder.yaml")),
                                   "this is a folder inside the dataset at"),
    "unknown-domain": (lambda ws: fit(ws, "--data.init_args.schedule.mixture=[{tokens: 0, weights: {poetry: 1.0}}]"),
                       "CurriculumSchedule.mixture = ['poetry']: unknown domains"),
    "micro-batch-of-no-tokens": (lambda ws: fit(ws, "--data.init_args.micro_batch_tokens=0"),
                                 "CurriculumDataModule.micro_batch_tokens = 0"),
    "missing-shard": (lambda ws: fit(ws, "--data", str(ws / "data-missing-shard.yaml")), "shard chunk-0-0.bin is missing"),
    "shard-cut-short": (lambda ws: fit(ws, "--data", str(ws / "data-cut-shard.yaml")), "(corrupt or cut short)"),
    # checkpoints
    "missing-checkpoint": (lambda ws: fit(ws, "--ckpt_path", str(ws / "nowhere.ckpt")), "fit.ckpt_path = '"),
    "checkpoint-of-another-width": (lambda ws: fit(ws, "--model.transformer.hidden_size=96", "--ckpt_path", checkpoint(ws)),
                                    "the checkpoint holds another model (model.transformer.hidden_size = 64 there, 96 here)"),
    "last-checkpoint-of-another-width": (lambda ws: fit(ws, "--model.transformer.hidden_size=96", "--ckpt_path", "last"),
                                         "the checkpoint holds another model (model.transformer.hidden_size = 64 there, 96 here)"),
    "validate-with-other-depth": (lambda ws: ["validate", *fit(ws, "--model.transformer.num_layers=3", "--ckpt_path", checkpoint(ws))[1:]],
                                  "validate.ckpt_path = '"),
    "truncated-checkpoint": (lambda ws: fit(ws, "--ckpt_path", str(ws / "truncated.ckpt")), "not a whole checkpoint file"),
    "yaml-as-checkpoint": (lambda ws: fit(ws, "--ckpt_path", str(ws / "not-a-checkpoint.yaml")), "not a whole checkpoint file"),
    # config files
    "yaml-with-a-tab": (lambda ws: fit(ws, "--config", str(ws / "tabs.yaml")),
                        "tabs.yaml': line 2, column 1: found character '\\t' that cannot start any token"),
    "yaml-unclosed-bracket": (lambda ws: fit(ws, "--config", str(ws / "unclosed.yaml")), "unclosed.yaml': line 3, column 1"),
    "config-file-missing": (lambda ws: fit(ws, "--config", str(ws / "nowhere.yaml")), "File does not exist"),
    # motif prepare over a complete dataset
    "prepare-truncated-tokenizer": (lambda ws: ["prepare", "--config", str(ws / "prepare.yaml"),
                                                "--tokenizer", str(ws / "truncated-tokenizer.json")],
                                    "PrepareConfig.tokenizer = '"),
    "prepare-missing-input": (lambda ws: ["prepare", "--config", str(ws / "prepare.yaml"),
                                          "--domains", json.dumps({"notes": {"paths": [str(ws / "raw" / "nope.jsonl")]}})],
                              "PrepareConfig.domains.notes.paths = "),
    "prepare-wrong-text-field": (lambda ws: ["prepare", "--config", str(ws / "prepare.yaml"), "--domains",
                                             json.dumps({"notes": {"paths": [str(ws / "raw" / "notes.jsonl")], "text_field": "body"}})],
                                 "PrepareConfig.domains.notes.text_field = 'body': in none of the first 100 records"),
}


MULTI_PROCESS = {"warmup-longer-than-the-run-on-two-processes"}
"""Cases that start several processes: Lightning re-runs the command line for the other ranks, so they run as a
command; the others call ``motif`` in the test's process (the same code, without 5 s of start-up each)."""


@pytest.mark.parametrize("case", CASES)
def test_a_mistake_stops_with_one_line_and_changes_nothing(case, workspace):
    command, expected = CASES[case]
    before = snapshot(workspace)
    run = run_motif if case in MULTI_PROCESS else run_motif_in_process
    result = run(command(workspace), cwd=workspace)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("motif: error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    after = snapshot(workspace)
    assert after == before, {"new": sorted(set(after) - set(before)), "gone": sorted(set(before) - set(after)),
                             "changed": sorted(k for k in before if k in after and after[k] != before[k])}


def test_the_workspace_trains_and_prepares_when_nothing_is_wrong(workspace):
    """The good commands the cases start from do work (so each case fails for its mistake alone)."""
    result = run_motif(fit(workspace, "--trainer.limit_val_batches=0", "--trainer.default_root_dir", str(workspace / "ok"),
                           "--trainer.logger.init_args.save_dir", str(workspace / "ok")), cwd=workspace)
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_motif(["prepare", "--config", str(workspace / "prepare.yaml")], cwd=workspace)
    assert result.returncode == 0, result.stderr[-3000:]


def test_there_are_at_least_30_distinct_mistakes():
    assert len(CASES) >= 30 and len({expected for _, expected in CASES.values()}) >= 30
