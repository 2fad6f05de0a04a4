"""Benchmark scores during training: lm-evaluation-harness tasks on the model being trained, every N steps."""

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from components.config_error import ConfigError, require
from lightning_motif.callbacks.cadence import training_batch_index


class HarnessTaskMonitor(Callback):
    """Every ``every_n_train_steps`` optimizer steps, runs ``tasks`` (lm-evaluation-harness, the eval extra; local
    task YAMLs from ``include_path``) on at most ``limit`` examples each and logs every metric as
    ``eval/<task>/<metric>`` on the training step axis, next to the validation loss. The tokenizer is the training
    data's (its ``data_dir``) unless ``tokenizer`` names one. Every rank runs the same requests on its model
    (tested on one device; a sharded model would need every rank in each forward, as this arranges, but that is
    not tested); rank 0 logs.

    Args:
        tasks: Harness task names.
        every_n_train_steps: Optimizer steps between two evaluations.
        include_path: A folder of task YAMLs.
        limit: Examples per task (a small, fixed subset keeps training fast).
        tokenizer: A tokenizer folder or tokenizer.json (default: the data module's dataset folder).
        batch_size: Sequences per scoring forward.
    """

    def __init__(self, tasks: list[str], every_n_train_steps: int = 1000, include_path: str | None = None,
                 limit: int | None = 50, tokenizer: str | None = None, batch_size: int = 8) -> None:
        self.tasks, self.every_n_train_steps, self.include_path = tasks, every_n_train_steps, include_path
        self.limit, self.tokenizer, self.batch_size = limit, tokenizer, batch_size
        require(bool(tasks), self, "tasks", "name at least one harness task")
        require(every_n_train_steps >= 1, self, "every_n_train_steps", "use a positive number of steps")
        self._last = -1

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        try:
            from lm_eval.tasks import TaskManager
        except ImportError:
            raise ConfigError(type(self).__name__, "tasks", self.tasks, "needs the eval extra: "
                              "pip install 'lightning-motif[eval]'") from None
        unknown = [t for t in self.tasks if t not in TaskManager(include_path=self.include_path).all_tasks]
        if unknown:
            raise ConfigError(type(self).__name__, "tasks", unknown, "unknown to lm-evaluation-harness: check the "
                              "names, or set include_path to the folder of their YAMLs")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if step == 0 or step % self.every_n_train_steps or step == self._last:
            return
        self._last = step
        from lm_eval import simple_evaluate
        from lm_eval.tasks import TaskManager

        from lightning_motif.evaluation import harness_model
        from lightning_motif.text import TextTokenizer

        tokenizer = TextTokenizer(self.tokenizer or Path(trainer.datamodule.data_dir))
        model = pl_module.net
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                outcome = simple_evaluate(model=harness_model(model, tokenizer, self.batch_size), tasks=self.tasks,
                                          limit=self.limit, task_manager=TaskManager(include_path=self.include_path),
                                          bootstrap_iters=0, log_samples=False, verbosity="ERROR")
        finally:
            model.train(was_training)
        if outcome is None:  # the harness returns results on rank 0 only
            return
        metrics = {f"eval/{task}/{name.replace(',', '_')}": float(value)
                   for task, values in outcome["results"].items()
                   for name, value in values.items() if isinstance(value, (int, float)) and name != "alias"}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=training_batch_index(trainer))
