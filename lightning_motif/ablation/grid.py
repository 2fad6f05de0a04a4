"""The runs of an ablation grid: first each optimizer's learning-rate sweep, then every variant at every seed at
its optimizer's best learning rate."""

from dataclasses import dataclass
from pathlib import Path

from lightning_motif.ablation.config import AblationConfig


@dataclass(frozen=True)
class Run:
    variant: str
    learning_rate: float
    seed: int

    @property
    def name(self) -> str:
        """The run's folder under output_dir: ``<variant>-lr<lr>-seed<seed>``."""
        return f"{self.variant}-lr{self.learning_rate:g}-seed{self.seed}"

    def fit_args(self, config: AblationConfig, output_dir: Path) -> list[str]:
        """``motif fit`` arguments: base, variant and optimizer configs, then the seed, learning rate and folders."""
        variant = config.variants[self.variant]
        files = [*config.base_configs, *variant.configs, config.optimizers[variant.optimizer].config]
        return [
            "fit",
            *(arg for path in files for arg in ("--config", path)),
            "--seed_everything", str(self.seed),
            "--data.init_args.seed", str(self.seed),
            "--model.optimizer.init_args.lr", repr(self.learning_rate),
            "--trainer.devices", str(config.devices_per_run),
            "--trainer.default_root_dir", str(output_dir / self.name),
            "--trainer.logger.init_args.save_dir", str(output_dir),
            "--trainer.logger.init_args.name", "",
            "--trainer.logger.init_args.version", self.name,
            *config.fit_args,
        ]


def sweep_runs(config: AblationConfig) -> dict[str, list[Run]]:
    """Per optimizer: its sweep variant at the first seed, once per learning rate."""
    return {name: [Run(sweep.sweep_variant, lr, config.seeds[0]) for lr in sweep.learning_rates]
            for name, sweep in config.optimizers.items()}


def seed_runs(config: AblationConfig, best_learning_rates: dict[str, float]) -> list[Run]:
    """Every variant at every seed (seed by seed), at its optimizer's best learning rate (sweep runs are not repeated)."""
    done = {run for runs in sweep_runs(config).values() for run in runs}
    runs = [Run(name, best_learning_rates[variant.optimizer], seed)  # seed by seed: a grid cut short stays balanced
            for seed in config.seeds for name, variant in config.variants.items()]
    return [run for run in runs if run not in done]


def best_learning_rate(losses: dict[float, float]) -> float:
    """The learning rate of the lowest final validation loss (a diverged or failed run counts as infinite);
    ties go to the smaller rate."""
    return min(sorted(losses), key=lambda lr: losses[lr])
