"""MotifCheckpoint: periodic checkpoints that survive a kill at any moment, for ``motif fit --ckpt_path last``.

Every ``every_n_train_steps`` optimizer steps and at the end of training, the full training state (model and
optimizer, sharded as a distributed-checkpoint folder under FSDP2; LR scheduler; data stream and curriculum
position; callbacks; RNG) is written to ``<name>.partial`` and renamed to ``<name>`` only once every rank has
finished writing, so a checkpoint either exists whole or not at all. ``last.ckpt`` is a symbolic link to the
newest one, swapped in one rename. The newest ``keep_last`` checkpoints are kept, older ones deleted after a
newer one is complete. Killing the run during a save leaves a ``.partial`` that nothing reads (and the next
save of that name replaces); ``--ckpt_path last`` then resumes from the previous checkpoint.
"""

import os
import shutil
import warnings
from datetime import timedelta
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from components.config_error import ConfigError

PARTIAL_SUFFIX = ".partial"

# Lightning warns that under manual optimization a checkpoint holds the weights after the step's update, and
# suggests saving the weights from before it. After the update is what an exact resume needs (the optimizer
# state, scheduler and data position are those after the step too), so the advice does not apply here.
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization", category=UserWarning)


def _remove(path: str) -> None:
    if os.path.islink(path) or os.path.isfile(path):
        os.remove(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def _replace(source: str, target: str) -> None:
    """Move a finished checkpoint (file or folder) into place in one rename. A folder cannot be renamed over a
    folder, so an existing target of the same name (the same step saved again) is first moved aside."""
    if os.path.lexists(target):
        aside = target + ".old"
        _remove(aside)
        os.replace(target, aside)
        os.replace(source, target)
        _remove(aside)
    else:
        os.replace(source, target)


class MotifCheckpoint(ModelCheckpoint):
    """Checkpoints every ``every_n_train_steps`` steps and at the end of training, keeping the newest
    ``keep_last``; atomic on every strategy (see the module docstring).

    Args:
        dirpath: Folder of the checkpoints; by default the run's own folder (``<logger save_dir>/<name>/<version>/
            checkpoints``), so runs never share one and ``motif fit --ckpt_path last`` continues the newest run.
        every_n_train_steps: Optimizer steps between checkpoints.
        keep_last: How many of the newest checkpoints to keep.
        train_time_interval: Also save after this much training time.
        filename: Checkpoint name pattern; ``{step}`` (written ``step=S``, optimizer steps) by default. A name saved again (the same
            step) replaces the old file; names never get version suffixes, so ``last.ckpt`` stays the one link.
    """

    def __init__(self, dirpath: str | None = None, every_n_train_steps: int = 1000, keep_last: int = 3,
                 train_time_interval: timedelta | None = None, filename: str = "{step}") -> None:
        if every_n_train_steps < 1:
            raise ConfigError(type(self).__name__, "every_n_train_steps", every_n_train_steps,
                              "use a positive number of steps, such as 1000")
        if keep_last < 1:
            raise ConfigError(type(self).__name__, "keep_last", keep_last, "keep at least the newest checkpoint (1 or more)")
        super().__init__(dirpath=dirpath, filename=filename, monitor="step", mode="max", save_top_k=keep_last,
                         save_last="link", every_n_train_steps=every_n_train_steps,
                         train_time_interval=train_time_interval, enable_version_counter=False)

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        partial = filepath + PARTIAL_SUFFIX
        if trainer.is_global_zero:
            Path(partial).parent.mkdir(parents=True, exist_ok=True)
            _remove(partial)  # left by a run killed while saving
        trainer.strategy.barrier()
        super()._save_checkpoint(trainer, partial)  # collective: every rank writes its part
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            _replace(partial, filepath)
        trainer.strategy.barrier()
        self._last_checkpoint_saved = filepath

    @staticmethod
    def _link_checkpoint(trainer: L.Trainer, filepath: str, linkpath: str) -> None:
        if trainer.is_global_zero and os.path.abspath(filepath) != os.path.abspath(linkpath):
            staged = linkpath + PARTIAL_SUFFIX
            _remove(staged)
            os.symlink(os.path.relpath(filepath, os.path.dirname(linkpath)), staged)
            if os.path.isdir(linkpath) and not os.path.islink(linkpath):
                shutil.rmtree(linkpath)  # a copied folder from an older run cannot be renamed over
            os.replace(staged, linkpath)
        trainer.strategy.barrier()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The final state is saved too, whatever the step count."""
        if not self._should_skip_saving_checkpoint(trainer):
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)
        super().on_train_end(trainer, pl_module)
