"""What a finished run logged, read back from its TensorBoard event files (the report needs nothing else)."""

import json
import math
from dataclasses import dataclass
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

RUN_RECORD = "run.json"
"""Written by the runner when ``motif fit`` returns: its exit status, wall time and command line."""
HPARAMS_FOLDER = "hparams"
"""The report's TensorBoard hparams summary of the run (rewritten by each report)."""


@dataclass
class RunLog:
    scalars: dict[str, list[tuple[int, float]]]
    """Tag -> (step, value) in step order."""
    record: dict
    """run.json (``exit_code``, ``seconds``, ``command``)."""

    def last(self, tag: str) -> float:
        """The value at the highest step, NaN when the tag was never logged."""
        series = self.scalars.get(tag)
        return series[-1][1] if series else math.nan

    def final_val_loss(self, domain: str | None = None) -> float:
        """Validation loss at the run's last step; infinite when the run failed or diverged (so a sweep never
        picks it)."""
        tag = "val/loss" if domain is None else f"val/loss_{domain}"
        value = self.last(tag)
        return value if self.record.get("exit_code") == 0 and math.isfinite(value) else math.inf

    def domains(self) -> list[str]:
        return sorted(tag.removeprefix("val/loss_") for tag in self.scalars if tag.startswith("val/loss_"))

    def mean_after_warmup(self, tag: str) -> float:
        """Mean of the logged values after the first quarter of the run (compilation and warm-up excluded)."""
        series = self.scalars.get(tag, [])
        kept = [value for _, value in series[len(series) // 4:]]
        return sum(kept) / len(kept) if kept else math.nan


def read_run(run_dir: Path) -> RunLog | None:
    """The run's logs, or None if it has not finished (no run.json)."""
    record_path = run_dir / RUN_RECORD
    if not record_path.is_file():
        return None
    scalars: dict[str, list[tuple[int, float]]] = {}
    for events in sorted({p.parent for p in run_dir.glob("events.out.tfevents.*")}):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in accumulator.Scalars(tag))
    for tag, series in scalars.items():
        series.sort()
    return RunLog(scalars, json.loads(record_path.read_text()))
