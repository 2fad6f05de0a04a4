"""The ablation grid without training: expansion into runs, seeds and folders, the sweep's choice, the statistics."""

import math

import pytest

from components.config_error import ConfigError
from lightning_motif.ablation.config import AblationConfig, OptimizerSweep, Variant
from lightning_motif.ablation.grid import Run, best_learning_rate, seed_runs, sweep_runs
from lightning_motif.ablation.results import Spread


def _grid(**changes) -> AblationConfig:
    fields = dict(
        output_dir="runs/grid", base_configs=["base.yaml"], reference="motif", seeds=[0, 1, 2],
        optimizers={"muon": OptimizerSweep(config="muon.yaml", learning_rates=[1e-3, 2e-3, 4e-3], sweep_variant="motif"),
                    "adamw": OptimizerSweep(config="adamw.yaml", learning_rates=[5e-4, 1e-3], sweep_variant="adamw")},
        variants={"motif": Variant(optimizer="muon", configs=["gda.yaml"]),
                  "gqa": Variant(optimizer="muon", configs=["gqa.yaml"]),
                  "adamw": Variant(optimizer="adamw", configs=["gda.yaml"])},
    )
    return AblationConfig(**{**fields, **changes})


def test_sweeps_run_each_learning_rate_on_the_sweep_variant_at_the_first_seed():
    assert sweep_runs(_grid()) == {"muon": [Run("motif", 1e-3, 0), Run("motif", 2e-3, 0), Run("motif", 4e-3, 0)],
                                   "adamw": [Run("adamw", 5e-4, 0), Run("adamw", 1e-3, 0)]}


def test_seed_runs_use_the_best_rate_seed_by_seed_and_skip_what_the_sweep_ran():
    runs = seed_runs(_grid(), {"muon": 2e-3, "adamw": 5e-4})
    assert runs == [Run("gqa", 2e-3, 0),  # motif and adamw at seed 0 are sweep runs
                    Run("motif", 2e-3, 1), Run("gqa", 2e-3, 1), Run("adamw", 5e-4, 1),
                    Run("motif", 2e-3, 2), Run("gqa", 2e-3, 2), Run("adamw", 5e-4, 2)]


def test_a_run_has_its_own_folder_seed_and_learning_rate(tmp_path):
    config = _grid(fit_args=["--trainer.max_steps", "7"])
    run = Run("gqa", 2e-3, 1)
    args = run.fit_args(config, tmp_path)
    assert run.name == "gqa-lr0.002-seed1"
    assert args[:9] == ["fit", "--config", "base.yaml", "--config", "gqa.yaml", "--config", "muon.yaml",
                        "--seed_everything", "1"]
    pairs = dict(zip(args[1::2], args[2::2]))
    assert pairs["--data.init_args.seed"] == "1"  # the seed sets the data order as well as the initialisation
    assert float(pairs["--model.optimizer.init_args.lr"]) == 2e-3
    assert pairs["--trainer.logger.init_args.version"] == run.name
    assert pairs["--trainer.default_root_dir"] == str(tmp_path / run.name)
    assert args[-2:] == ["--trainer.max_steps", "7"]  # fit_args come last, so they win


def test_the_best_rate_is_the_lowest_loss_and_a_diverged_run_never_wins():
    assert best_learning_rate({1e-3: 3.0, 2e-3: 2.5, 4e-3: math.inf}) == 2e-3
    assert best_learning_rate({1e-3: 2.5, 2e-3: 2.5}) == 1e-3


@pytest.mark.parametrize("changes, field", [
    (dict(reference="nope"), "reference"),
    (dict(seeds=[0, 0]), "seeds"),
    (dict(seeds=[]), "seeds"),
    (dict(variants={"motif": Variant(optimizer="sgd")}), "variants.motif.optimizer"),
    (dict(variants={"mo tif": Variant(optimizer="muon")}, reference="mo tif"), "variants"),
    (dict(optimizers={"muon": OptimizerSweep(config="m.yaml", learning_rates=[], sweep_variant="motif")},
          variants={"motif": Variant(optimizer="muon")}), "optimizers.muon.learning_rates"),
    (dict(optimizers={"muon": OptimizerSweep(config="m.yaml", learning_rates=[1e-3], sweep_variant="gqa")},
          variants={"motif": Variant(optimizer="muon")}), "optimizers.muon.sweep_variant"),
    (dict(devices_per_run=0), "devices_per_run"),
])
def test_a_bad_grid_names_its_field(changes, field):
    with pytest.raises(ConfigError, match=f"AblationConfig.{field}"):
        _grid(**changes)


def test_spread_statistics():
    spread = Spread([1.0, 2.0, 3.0])
    assert (spread.mean, spread.std) == (2.0, 1.0)
    assert spread.half_width == pytest.approx(4.303 / math.sqrt(3))  # Student's t, 2 degrees of freedom
    assert not spread.excludes_zero()  # 2 +- 2.48
    assert Spread([1.0, 1.1, 0.9]).excludes_zero()  # 1 +- 0.25
    assert not Spread([-1.0, 1.0, 0.5]).excludes_zero()
    assert math.isnan(Spread([1.0]).std) and not Spread([1.0]).excludes_zero()
