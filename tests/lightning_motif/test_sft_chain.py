"""``motif sft``: the three stages on the offline demo data at the smallest size (the recipe configs of
experiments/sft with the demo's changes), each from the previous stage's final weights; what a finished chain
leaves (checkpoints, pruning counts, generations and eval scores in stage.json and TensorBoard); a second call
that reruns nothing; a bad chain refused before anything runs."""

import json
from pathlib import Path

import yaml

from motif_cli import REPO, run_motif, scalars

SFT = REPO / "experiments" / "sft"


def chain_config(tmp: Path) -> Path:
    """experiments/sft/chain.yaml shrunk: fewer conversations, rows of 256 tokens, a few steps per stage."""
    chain = yaml.safe_load((SFT / "chain.yaml").read_text())
    chain.update(output_dir=str(tmp / "runs"), demo_data=str(tmp / "raw"), demo_examples=60, max_new_tokens=8,
                 eval_include_path=str(tmp / "raw" / "tasks"), eval_limit=8)
    for stage, steps in zip(chain["stages"], (4, 2, 2)):
        prepare = yaml.safe_load((REPO / stage["prepare_config"]).read_text())
        prepare["output_dir"] = str(tmp / "data" / stage["name"])
        prepare["domains"]["chat"]["paths"] = [str(tmp / "raw" / Path(p).name) for p in prepare["domains"]["chat"]["paths"]]
        if "tokenizer" in prepare:
            prepare["tokenizer"] = str(tmp / "data" / "stage1")
        prepare["vocab_size"], prepare["val_fraction"] = 512, 0.15  # a few validation conversations of ~65
        (tmp / f"prepare-{stage['name']}.yaml").write_text(yaml.safe_dump(prepare))
        stage["prepare_config"] = str(tmp / f"prepare-{stage['name']}.yaml")
        stage["fit_config"] = str(REPO / stage["fit_config"])
        stage["fit_args"] = ["--config", str(SFT / "demo" / "fit.yaml"), "--data.init_args.data_dir", prepare["output_dir"],
                             "--data.init_args.seq_len", "256", "--data.init_args.rows_per_step", "2",
                             "--model.transformer.vocab_size", "512", "--trainer.max_steps", str(steps),
                             "--trainer.val_check_interval", str(steps), "--trainer.log_every_n_steps", "1",
                             "--trainer.enable_progress_bar", "false"]
        if "prune" in stage:
            stage["prune"].update(inputs=[str(tmp / "raw" / "reasoning.jsonl")], output=str(tmp / "raw" / "pruned.jsonl"))
    path = tmp / "chain.yaml"
    path.write_text(yaml.safe_dump(chain))
    return path


def test_the_chain_runs_each_stage_from_the_last_and_keeps_everything(tmp_path):
    config = chain_config(tmp_path)
    result = run_motif(["sft", "--config", str(config)], cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = [json.loads((tmp_path / "runs" / s / "stage.json").read_text()) for s in ("stage1", "stage2", "stage3")]
    assert records[0]["started_from"] is None
    assert records[1]["started_from"] == records[0]["checkpoint"]
    assert records[2]["started_from"] == records[1]["checkpoint"]
    assert all(Path(r["checkpoint"]).is_file() for r in records)  # every stage's checkpoint is kept
    counts = records[2]["prune"]
    assert counts["near_duplicate"] > 0 and counts["low_value"] > 0
    assert counts["kept"] + counts["near_duplicate"] + counts["low_value"] == counts["read"]
    assert json.loads((tmp_path / "raw" / "pruned.jsonl.manifest.json").read_text())["counts"] == counts
    for stage, record in zip(("stage1", "stage2", "stage3"), records):
        logged = scalars(tmp_path / "runs" / stage)
        assert "val/loss" in logged and "train/loss" in logged
        assert record["generations"][0]["prompt"].startswith("<|im_start|>user\n")
        assert 0 <= record["eval"]["sft_demo_arithmetic"]["acc,none"] <= 1
        after = scalars(tmp_path / "runs" / stage / "tensorboard" / "after-stage")  # the eval, beside the text
        assert after["eval/sft_demo_arithmetic/acc,none"] == [record["eval"]["sft_demo_arithmetic"]["acc,none"]]

    again = run_motif(["sft", "--config", str(config)], cwd=REPO)
    assert again.returncode == 0 and again.stdout.count("done before") == 3


def test_a_chain_naming_a_missing_file_is_refused_before_anything_runs(tmp_path):
    config = yaml.safe_load((SFT / "chain.yaml").read_text())
    config["output_dir"] = str(tmp_path / "runs")
    config["stages"][1]["fit_config"] = "experiments/sft/no-such-stage.yaml"
    (tmp_path / "chain.yaml").write_text(yaml.safe_dump(config))
    result = run_motif(["sft", "--config", str(tmp_path / "chain.yaml")], cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.strip() == ("motif: error: SFTStage.fit_config = 'experiments/sft/no-such-stage.yaml': "
                                     "no such file (stage stage2): fix the path")
    assert not (tmp_path / "runs").exists()
