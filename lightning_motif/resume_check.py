"""Before ``motif fit --ckpt_path ...`` starts: which run ``last`` continues, and that the checkpoint exists and
was written by a model of the same shape, else one line that names the differing fields (instead of a
size-mismatch traceback after start-up)."""

import dataclasses
import os
import zipfile
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from components.config_error import ConfigError

NAMED_CHECKPOINTS = ("best", "hpc", "registry")
DISTRIBUTED_METADATA = "meta.pt"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
"""Where a run folder (a logger version) keeps the link to its newest checkpoint (MotifCheckpoint's default)."""


def continue_newest_run(trainer_config) -> None:
    """Set the version of a logger configured without one (``trainer.logger.init_args``) to the newest run folder
    under its ``save_dir/name`` that holds ``checkpoints/last.ckpt``, so the resumed run logs and checkpoints
    where the interrupted one did. Nothing changes when no run folder has a checkpoint (a new run starts) or the
    logger's version is given."""
    logger = trainer_config.get("logger")
    init_args = logger.get("init_args") if hasattr(logger, "get") else None
    if init_args is None or init_args.get("version") is not None or init_args.get("save_dir") is None:
        return
    root = Path(init_args["save_dir"]) / (init_args.get("name") or "")
    runs = [link.parents[1] for link in root.glob(f"*/{LAST_CHECKPOINT}") if os.path.lexists(link)]
    if runs:
        newest = max(runs, key=lambda run: os.lstat(run / LAST_CHECKPOINT).st_mtime)
        init_args["version"] = newest.name


def resolve_checkpoint(trainer: L.Trainer, ckpt_path: str | None, subcommand: str = "fit") -> Path | None:
    """The checkpoint ``ckpt_path`` names: a path, or "last" (the newest last*.ckpt of the checkpoint callbacks,
    as Lightning picks it); None when there is none to check."""
    if ckpt_path is None or ckpt_path in NAMED_CHECKPOINTS:
        return None
    if ckpt_path == "last":
        candidates = [Path(p) for callback in trainer.checkpoint_callbacks if isinstance(callback, ModelCheckpoint)
                      for p in callback._find_last_checkpoints(trainer)]
        existing = [p for p in candidates if p.exists()]
        return max(existing, key=lambda p: p.stat().st_mtime) if existing else None
    path = Path(ckpt_path)
    if not path.exists():
        raise ConfigError(subcommand, "ckpt_path", ckpt_path, "no such checkpoint: give an existing checkpoint file or "
                          "folder, or 'last' to resume the newest one of the run's checkpoint folder")
    return path


IMPLEMENTATION_FIELDS = ("kernel", "norm_kernel", "loss_kernel", "init_std")
"""Fields that choose how the same function is computed (or how weights start), not which: they may differ."""


def model_differences(ours: object, theirs: object) -> str | None:
    """The first fields (up to three) in which two model configs (dataclasses, or the dicts LightningCLI saves)
    differ in what they compute, or None."""
    from lightning_motif.presets import as_model_config

    mine = _flatten(as_model_config(ours), "model.transformer")
    other = _flatten(as_model_config(theirs), "model.transformer")
    differing = [key for key in sorted(set(mine) | set(other))
                 if mine.get(key) != other.get(key) and key.rsplit(".", 1)[-1] not in IMPLEMENTATION_FIELDS]
    if not differing:
        return None
    return ", ".join(f"{key} = {other.get(key)!r} there, {mine.get(key)!r} here" for key in differing[:3])


def _flatten(value: object, prefix: str) -> dict[str, object]:
    """Dotted keys of a (nested) config, as saved in a checkpoint's hyper-parameters (dicts with class_path and
    init_args) or as a dataclass."""
    if dataclasses.is_dataclass(value):
        value = {"class": type(value).__name__, **{f.name: getattr(value, f.name) for f in dataclasses.fields(value)}}
    if isinstance(value, dict):
        return {k: v for name, item in value.items() if name != "init_args"
                for k, v in _flatten(item, f"{prefix}.{name}").items()} | (
            _flatten(value["init_args"], prefix) if isinstance(value.get("init_args"), dict) else {})
    return {prefix: value}


def check_checkpoint_matches(path: Path, transformer: object, subcommand: str = "fit") -> None:
    """Raise ConfigError when the checkpoint at ``path`` cannot be read or holds a model config other than
    ``transformer`` (in the form the module's hyper-parameters save it)."""
    source = path / DISTRIBUTED_METADATA if path.is_dir() else path
    if path.is_file() and not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise ConfigError(subcommand, "ckpt_path", str(path), "not a whole checkpoint file (cut short, or another kind "
                          "of file): give another checkpoint")
    try:
        checkpoint = torch.load(source, map_location="cpu", weights_only=False, mmap=not path.is_dir())
    except Exception as error:  # a truncated or foreign file
        reason = str(error).splitlines()[0] if str(error) else ""
        raise ConfigError(subcommand, "ckpt_path", str(path), f"cannot be read as a checkpoint ({type(error).__name__}"
                          f"{': ' + reason if reason else ''}): give another checkpoint") from error
    saved = checkpoint.get("hyper_parameters", {}).get("transformer")
    if saved is None:
        return
    shown = model_differences(transformer, saved)
    if shown:
        raise ConfigError(subcommand, "ckpt_path", str(path), f"the checkpoint holds another model ({shown}): use the "
                          "model config it was trained with (its run folder's config.yaml), or no --ckpt_path")
