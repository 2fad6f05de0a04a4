"""The typed grid of an ablation suite (``motif ablate run|report --config <grid.yaml>``)."""

import math
from dataclasses import dataclass, field

from components.config_error import ConfigError


@dataclass(kw_only=True)
class OptimizerSweep:
    """One optimizer and its learning-rate sweep."""

    config: str
    """A YAML that selects the optimizer (stacked after the base and the variant's files)."""
    learning_rates: list[float]
    """The sweep, run on ``sweep_variant`` at the first seed (3 or more values for evidence; one for a quick
    look); the variants that use this optimizer then train at the value with the lowest final validation loss."""
    sweep_variant: str
    """The variant whose runs sweep the learning rate."""


@dataclass(kw_only=True)
class Variant:
    """One row of the table: config files that swap components of the base, and the optimizer it trains with."""

    optimizer: str
    """A key of ``optimizers``."""
    configs: list[str] = field(default_factory=list)
    """YAML files stacked after the base configs (later files win)."""
    comparison: str = ""
    """What this row compares with the reference and how (e.g. "attention, matched parameters")."""


@dataclass(kw_only=True)
class AblationConfig:
    """A grid of training runs: every variant at every seed, each optimizer's learning rate swept first."""

    output_dir: str
    """Each run writes its TensorBoard logs and fit.log into ``<output_dir>/<variant>-lr<lr>-seed<seed>/``."""
    base_configs: list[str]
    """``motif fit`` configs every run starts from (model, data, trainer)."""
    optimizers: dict[str, OptimizerSweep]
    variants: dict[str, Variant]
    reference: str
    """The variant every other one is compared with (the Motif recipe)."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Each seed sets the initialisation (``seed_everything``) and the data order (``data.init_args.seed``)."""
    fit_args: list[str] = field(default_factory=list)
    """Extra ``motif fit`` arguments for every run (e.g. ``--trainer.max_steps 100`` for a shorter grid)."""
    report_dir: str | None = None
    """Where ``report`` writes REPORT.md, summary.json and the plots; default ``<output_dir>/report``."""
    report: bool = True
    """``run`` ends by writing the report; false leaves it to ``motif ablate report`` (on another machine, say)."""
    devices_per_run: int = 1
    """GPUs each run uses (``trainer.devices``); runs go side by side on the GPUs there are (one at a time on CPU)."""
    start_runs_for_s: float | None = None
    """Start no new run after this many seconds (the runs already going finish); the next call continues."""

    def fail(self, field_name: str, value: object, fix: str) -> ConfigError:
        return ConfigError("AblationConfig", field_name, value, fix)

    def __post_init__(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise self.fail("seeds", self.seeds, "list distinct seeds, e.g. [0, 1, 2]")
        if self.reference not in self.variants:
            raise self.fail("reference", self.reference, f"name one of the variants {sorted(self.variants)}")
        for name, variant in self.variants.items():
            if variant.optimizer not in self.optimizers:
                raise self.fail(f"variants.{name}.optimizer", variant.optimizer,
                                f"name one of the optimizers {sorted(self.optimizers)}")
            if not name.replace("_", "").replace("-", "").isalnum():
                raise self.fail("variants", name, "use letters, digits, '-' and '_' in variant names (folder names)")
        for name, sweep in self.optimizers.items():
            if sweep.sweep_variant not in self.variants or self.variants[sweep.sweep_variant].optimizer != name:
                raise self.fail(f"optimizers.{name}.sweep_variant", sweep.sweep_variant,
                                f"name a variant that trains with {name}")
            if not sweep.learning_rates or not all(lr > 0 and math.isfinite(lr) for lr in sweep.learning_rates):
                raise self.fail(f"optimizers.{name}.learning_rates", sweep.learning_rates,
                                "list positive learning rates, e.g. [2.0e-3, 4.0e-3, 8.0e-3]")
        if self.devices_per_run < 1:
            raise self.fail("devices_per_run", self.devices_per_run, "use 1 or more")
