"""The grid's results from its runs' logs: the sweeps, each variant's seeds, and the statistics of the table."""

import math
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, stdev

from lightning_motif.ablation.config import AblationConfig
from lightning_motif.ablation.grid import Run, best_learning_rate, sweep_runs
from lightning_motif.ablation.logs import RunLog, read_run

T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
"""Student's t two-sided 95% quantiles by degrees of freedom (1.96 beyond 10)."""


@dataclass
class Spread:
    """Mean, sample standard deviation and 95% confidence interval of the mean of a few numbers."""

    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return mean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        return stdev(self.values) if self.n > 1 and all(map(math.isfinite, self.values)) else math.nan

    @property
    def half_width(self) -> float:
        """Half the 95% interval of the mean (Student's t with n - 1 degrees of freedom)."""
        return T_975.get(self.n - 1, 1.96) * self.std / math.sqrt(self.n) if self.n > 1 else math.nan

    def excludes_zero(self) -> bool:
        return math.isfinite(self.half_width) and abs(self.mean) > self.half_width


def _best_of_sweeps(config: AblationConfig, sweeps: dict[str, list[tuple[Run, RunLog | None]]]
                    ) -> dict[str, float] | None:
    best = {}
    for optimizer, runs in sweeps.items():
        if any(log is None for _, log in runs):
            return None
        losses = {run.learning_rate: log.final_val_loss() for run, log in runs}
        if not any(map(math.isfinite, losses.values())):
            raise config.fail(f"optimizers.{optimizer}.learning_rates", sorted(losses), "every sweep run failed or "
                              f"diverged: see {Path(config.output_dir) / runs[0][0].name / 'fit.log'}")
        best[optimizer] = best_learning_rate(losses)
    return best


def best_learning_rates(config: AblationConfig) -> dict[str, float] | None:
    """Each optimizer's best swept learning rate; None until every sweep run has finished."""
    output = Path(config.output_dir)
    return _best_of_sweeps(config, {optimizer: [(run, read_run(output / run.name)) for run in runs]
                                    for optimizer, runs in sweep_runs(config).items()})


@dataclass
class GridResults:
    config: AblationConfig
    sweeps: dict[str, list[tuple[Run, RunLog | None]]]
    best: dict[str, float] | None
    seeds: dict[str, dict[int, RunLog]]
    """Variant -> seed -> the finished run at its optimizer's best learning rate."""
    runs: dict[Run, RunLog]
    """Every finished run of the grid, once (a sweep run that is also a seed run is one entry)."""

    def domains(self) -> list[str]:
        return sorted({d for runs in self.seeds.values() for log in runs.values() for d in log.domains()})

    def final_loss(self, variant: str, domain: str | None = None) -> Spread:
        return Spread([log.final_val_loss(domain) for _, log in sorted(self.seeds[variant].items())])

    def difference(self, variant: str, domain: str | None = None) -> Spread:
        """Per seed, the variant's final loss minus the reference's at the same seed (same data order)."""
        reference = self.seeds[self.config.reference]
        return Spread([log.final_val_loss(domain) - reference[seed].final_val_loss(domain)
                       for seed, log in sorted(self.seeds[variant].items()) if seed in reference])

    def scalar(self, variant: str, tag: str) -> Spread:
        return Spread([log.last(tag) for log in self.seeds[variant].values()])

    def tokens_per_sec(self, variant: str) -> Spread:
        return Spread([log.mean_after_warmup("throughput/tokens_per_sec") for log in self.seeds[variant].values()])


def collect(config: AblationConfig) -> GridResults:
    """The grid's finished runs, each read once."""
    output, read = Path(config.output_dir), {}

    def log_of(run: Run) -> RunLog | None:
        if run not in read:
            read[run] = read_run(output / run.name)
        return read[run]

    sweeps = {optimizer: [(run, log_of(run)) for run in runs] for optimizer, runs in sweep_runs(config).items()}
    best = _best_of_sweeps(config, sweeps)
    seeds: dict[str, dict[int, RunLog]] = {}
    for name, variant in config.variants.items():
        if best is None:
            break
        logs = {seed: log_of(Run(name, best[variant.optimizer], seed)) for seed in config.seeds}
        seeds[name] = {seed: log for seed, log in logs.items() if log is not None}
    return GridResults(config, sweeps, best, seeds, {run: log for run, log in read.items() if log is not None})
