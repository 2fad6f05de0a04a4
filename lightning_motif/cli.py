"""The ``motif`` command: LightningCLI with the Motif model, data modules and dashboard callbacks.

    motif fit --config experiments/quickstart.yaml
    motif fit --config experiments/quickstart.yaml --model.transformer.attention=components.attention.GroupedQueryAttentionConfig
    motif fit --config experiments/quickstart.yaml --print_config
    motif prepare --config my-corpus.yaml       (tokenize raw corpora into shards; see lightning_motif.data.prepare)

A bad config stops before any compute with one line on stderr (``motif: error: <field>: <fix>``) and exit status 2;
a run stopped by non-finite training (``model.on_nonfinite``) ends with ``motif: stopped: ...`` and status 3.
"""

import re
import sys
from dataclasses import fields

from jsonargparse import ActionConfigFile
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from components.attention.base import AttentionConfig
from components.config_error import ConfigError
from components.mlp.base import MLPConfig
from lightning_motif.callbacks import CurriculumMonitor, ModelStatisticsMonitor, TokenThroughputMonitor
from lightning_motif.data.datamodule import CurriculumDataModule
from lightning_motif.data import prepare as prepare_module
from lightning_motif.data.prepare import PrepareConfig, prepare
from lightning_motif.module import MotifLM, NonFiniteTrainingError
from lightning_motif.presets import enable_component_subclasses
from lightning_motif.resume_check import check_checkpoint_matches, resolve_checkpoint

EXIT_CONFIG_ERROR = 2
EXIT_STOPPED = 3
CONFIG_ERROR_LINE = re.compile(r"^[A-Z]\w*\.\w+ = .+: .+")
"""How ``ConfigError`` messages look: ``Owner.field = value: fix``."""


def _subclass_paths(base: type) -> list[str]:
    """Import paths of the implementations of ``base``, preferring the package that re-exports them."""
    found, stack = [], list(base.__subclasses__())
    while stack:
        cls = stack.pop()
        package = cls.__module__.rsplit(".", 1)[0]
        module = package if getattr(sys.modules.get(package), cls.__name__, None) is cls else cls.__module__
        found.append(f"{module}.{cls.__name__}")
        stack.extend(cls.__subclasses__())
    return sorted(found)


def summarize_parse_error(message: str) -> str:
    """One line out of jsonargparse's multi-line report: the key, the innermost reason and, for a component
    class_path, the implementations that exist."""
    lines = [line.strip(" -") for line in str(message).splitlines() if line.strip(" -")]
    if not lines:
        return "invalid arguments"
    head, detail = lines[0], ""
    for i, line in enumerate(lines):
        if line.startswith("Problem with given class_path"):
            detail = f"{line.rstrip(':')}: {lines[i + 1]}" if i + 1 < len(lines) else line
            break
    else:
        skipped = ("Given value", "Subtypes", "Errors", "Does not validate", "Expected a <class 'NoneType'>")
        detail = next((line for line in lines[1:] if not line.startswith(skipped)), "")
    for suffix, base in ((".attention", AttentionConfig), (".mlp", MLPConfig)):
        unknown_class = "has no attribute" in detail or "No module named" in detail
        if unknown_class and head.rstrip(':"').endswith(suffix):
            detail += f" (choose one of: {', '.join(_subclass_paths(base))})"
    return f"{head} {detail}".strip()


class _OneLineErrorParser(LightningArgumentParser):
    """Reports a parse error as one line instead of the usage text followed by a multi-line report."""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error:  # jsonargparse parses subcommands with exceptions and retries
            return super().error(message, ex)
        print(f"motif: error: {summarize_parse_error(message)}", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)


class MotifCLI(LightningCLI):
    def init_parser(self, **kwargs) -> LightningArgumentParser:
        parser = _OneLineErrorParser(**kwargs)
        parser.add_argument("-c", "--config", action=ActionConfigFile, help="Path to a YAML config file.")
        return parser

    def _check_data_fits_model(self) -> None:
        """Refuse data the model cannot take before the trainer starts (and so before anything is written)."""
        check = getattr(self.datamodule, "check_fits", None)
        if check is not None:
            check(self.model)

    def _check_before_run(self) -> None:
        """Data and checkpoint checks, before the trainer starts (and so before anything is written)."""
        self._check_data_fits_model()
        checkpoint = resolve_checkpoint(self.trainer, self.config[self.subcommand].get("ckpt_path"))
        if checkpoint is not None:
            check_checkpoint_matches(checkpoint, self.model.hparams.get("transformer"))

    before_fit = before_validate = before_test = _check_before_run


def _config_error_within(error: BaseException) -> str | None:
    """The message of a ConfigError that ``error`` was raised from or, for jsonargparse's union report, quotes."""
    seen = error
    while seen is not None:
        if isinstance(seen, ConfigError):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    quoted = [line.strip(" -") for line in str(error).splitlines() if CONFIG_ERROR_LINE.match(line.strip(" -"))]
    return quoted[0] if quoted else None


def run_prepare(args: list[str]) -> None:
    """``motif prepare``: the fields of PrepareConfig as flags or from ``--config`` YAML."""
    parser = _OneLineErrorParser(prog="motif prepare", description=prepare_module.__doc__)
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="Path to a YAML config file.")
    parser.add_class_arguments(PrepareConfig)
    parsed = parser.instantiate(parser.parse_args(args))
    prepare(PrepareConfig(**{f.name: parsed[f.name] for f in fields(PrepareConfig)}))


def main(args: list[str] | None = None) -> None:
    args = sys.argv[1:] if args is None else args
    enable_component_subclasses()
    try:
        if args[:1] == ["prepare"]:
            run_prepare(args[1:])
            return
        MotifCLI(
            MotifLM,
            CurriculumDataModule,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={
                "callbacks": [
                    LearningRateMonitor(logging_interval="step"),
                    TokenThroughputMonitor(),
                    ModelStatisticsMonitor(),
                    CurriculumMonitor(),
                ],
            },
            args=args,
        )
    except ValueError as error:  # a ConfigError, or jsonargparse's report of one raised while it instantiated
        reason = _config_error_within(error)
        if reason is None:
            raise
        print(f"motif: error: {reason}", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)
    except NonFiniteTrainingError as error:
        print(f"motif: stopped: {error}", file=sys.stderr)
        sys.exit(EXIT_STOPPED)


if __name__ == "__main__":
    main()
