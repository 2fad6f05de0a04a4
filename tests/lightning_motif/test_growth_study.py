"""The growth study's report from its runs' logs: tokens continue across the growth, FLOPs add up per phase, and
the compute the scratch arm needs to reach the growth arm's loss is read off its curve."""

import json
import math

import pytest
import yaml
from torch.utils.tensorboard import SummaryWriter

from components.config_error import ConfigError
from lightning_motif.ablation.logs import RUN_RECORD
from lightning_motif.growth_study import GrowthStudyConfig, Study, main, study_curves, summary
from motif_cli import REPO

STEP_TOKENS, SOURCE_FLOPS, TARGET_FLOPS = 1000, 100.0, 400.0


def write_run(folder, flops_per_token, val, first_step=0):
    """A finished run's TensorBoard logs: ``val`` {step: loss}, tokens_seen on the stream from ``first_step``."""
    folder.mkdir(parents=True)
    writer = SummaryWriter(str(folder))
    for step in range(1, max(val) + 1):
        writer.add_scalar("curriculum/tokens_seen", (first_step + step) * STEP_TOKENS, step)
        writer.add_scalar("model/flops_per_token", flops_per_token, step)
    for step, loss in val.items():
        writer.add_scalar("val/loss", loss, step)
    writer.close()
    (folder / RUN_RECORD).write_text(json.dumps({"exit_code": 0}))


def study_config(tmp_path, **overrides):
    models = REPO / "experiments" / "growth"
    return GrowthStudyConfig(**{"base_configs": [str(REPO / "experiments/ablations/suite/base.yaml")],
                                "source_model": str(models / "source-model.yaml"),
                                "target_model": str(models / "target-model.yaml"), "total_steps": 20,
                                "source_steps": 10, "seeds": [0], "output_dir": str(tmp_path / "runs"),
                                "report_dir": str(tmp_path / "report"), **overrides})


def test_the_report_counts_each_phases_flops_and_reads_the_compute_to_match(tmp_path):
    config = study_config(tmp_path)
    runs = tmp_path / "runs"
    write_run(runs / "scratch-seed0", TARGET_FLOPS, {5: 4.0, 10: 3.0, 15: 2.6, 20: 2.4})
    write_run(runs / "source-seed0", SOURCE_FLOPS, {5: 4.5, 10: 3.8})
    write_run(runs / "grown-seed0", TARGET_FLOPS, {5: 3.0, 10: 2.8}, first_step=10)
    numbers = summary(study_curves(config))["seeds"][0]
    source_flops = 10 * STEP_TOKENS * SOURCE_FLOPS
    assert numbers["growth_flops"] == pytest.approx(source_flops + 10 * STEP_TOKENS * TARGET_FLOPS)
    assert numbers["scratch_flops"] == pytest.approx(20 * STEP_TOKENS * TARGET_FLOPS)
    assert numbers["tokens"] == pytest.approx(20 * STEP_TOKENS)
    losses = numbers["growth_final_loss"], numbers["source_final_loss"], numbers["grown_first_loss"]
    assert losses == pytest.approx((2.8, 3.8, 3.0))  # TensorBoard stores fp32
    # scratch passes 2.8 halfway between its steps 10 (3.0) and 15 (2.6): step 12.5
    assert numbers["scratch_flops_to_growth_final_loss"] == pytest.approx(12.5 * STEP_TOKENS * TARGET_FLOPS)


def test_a_growth_loss_the_scratch_arm_never_reaches_needs_infinite_compute(tmp_path):
    config = study_config(tmp_path)
    runs = tmp_path / "runs"
    write_run(runs / "scratch-seed0", TARGET_FLOPS, {10: 3.0, 20: 2.9})
    write_run(runs / "source-seed0", SOURCE_FLOPS, {10: 3.8})
    write_run(runs / "grown-seed0", TARGET_FLOPS, {10: 2.5}, first_step=10)
    assert math.isinf(summary(study_curves(config))["seeds"][0]["scratch_flops_to_growth_final_loss"])


def test_the_grown_run_continues_the_stream_from_the_source_weights(tmp_path):
    config = study_config(tmp_path)
    name, args = Study(config).arguments(0, "grown")
    assert name == "grown-seed0" and args[args.index("--trainer.max_steps") + 1] == "10"
    assert args[args.index("--data.init_args.start_step") + 1] == "10"
    assert args[args.index("--model.init_weights_from") + 1].endswith("grow-seed0/weights/model.ckpt")


@pytest.mark.parametrize("overrides,field", [({"source_steps": 20}, "source_steps"),
                                             ({"target_model": "missing.yaml"}, "target_model")])
def test_a_bad_study_config_names_the_field(tmp_path, overrides, field):
    with pytest.raises(ConfigError, match=f"^GrowthStudyConfig.{field} = "):
        study_config(tmp_path, **overrides)


@pytest.mark.parametrize("change,says", [
    ({"source_steps": 300}, "GrowthStudyConfig.source_steps = 300: train the source for part of the run"),
    ({"colour": "red"}, "does not accept option 'colour'"),
])
def test_the_command_refuses_a_bad_study_in_one_line(tmp_path, capsys, change, says):
    study = yaml.safe_load((REPO / "experiments" / "growth" / "study.yaml").read_text())
    study.update(change, base_configs=[str(REPO / p) for p in study["base_configs"]],
                 source_model=str(REPO / study["source_model"]), target_model=str(REPO / study["target_model"]))
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    with pytest.raises(SystemExit) as stopped:
        main(["--config", str(tmp_path / "study.yaml")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and len(lines) == 1 and lines[0].startswith("growth_study: error: ")
    assert says in lines[0]
