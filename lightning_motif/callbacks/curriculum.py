"""Logs what the curriculum fed each step: mixture weights, tokens per domain, sequence length, batch size."""

import lightning as L
from lightning.pytorch.callbacks import Callback

from lightning_motif.callbacks.cadence import logging_step


class CurriculumMonitor(Callback):
    """Every ``trainer.log_every_n_steps`` steps, from the step's batch (see ``CurriculumDataset``):
    ``curriculum/weight/<domain>``, ``curriculum/tokens_seen/<domain>`` (input tokens up to and including the
    step, all ranks), ``curriculum/seq_len``, ``curriculum/batch_sequences``, ``curriculum/batch_tokens`` and
    ``curriculum/tokens_seen``."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        step = logging_step(trainer)
        info = batch.get("curriculum") if isinstance(batch, dict) else None
        if info is None or step is None:
            return
        batch_tokens = info["seq_len"] * info["global_sequences"]
        metrics = {
            "curriculum/seq_len": info["seq_len"],
            "curriculum/batch_sequences": info["global_sequences"],
            "curriculum/batch_tokens": batch_tokens,
            "curriculum/tokens_seen": info["tokens_before"] + batch_tokens,
            **{f"curriculum/weight/{d}": w for d, w in info["weights"].items()},
            **{f"curriculum/tokens_seen/{d}": n for d, n in info["domain_tokens_seen"].items()},
        }
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
