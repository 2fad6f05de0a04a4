"""The ``motif`` command: LightningCLI (fit, validate, test) with the Motif model, data modules and dashboard
callbacks, plus the project's own subcommands (prepare, convert, generate, eval, grow, sft, ablate), all listed by
``motif --help``.

    motif fit --config experiments/quickstart.yaml
    motif fit --config experiments/quickstart.yaml --model.transformer.attention=components.attention.GroupedQueryAttentionConfig
    motif fit --config experiments/quickstart.yaml --print_config
    motif fit --config experiments/quickstart.yaml --ckpt_path last   (continue the newest run, in its own folder)
    motif prepare --config my-corpus.yaml       (tokenize raw corpora into shards; see lightning_motif.data.prepare)
    motif grow --source small.ckpt --target experiments/presets/motif-2-12.7b.yaml --output grown

A bad config stops before any compute with one line on stderr (``motif: error: <field>: <fix>``) and exit status 2;
a run stopped by non-finite training (``model.on_nonfinite``), or a ``motif sft`` stage that failed, ends with
``motif: stopped: ...`` and status 3.
"""

import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import ModuleType

import yaml

from jsonargparse import ActionConfigFile
from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from components.attention.base import AttentionConfig
from components.config_error import ConfigError
from components.mlp.base import MLPConfig
from lightning_motif.callbacks import CurriculumMonitor, ModelStatisticsMonitor, TokenThroughputMonitor
from lightning_motif.data import prepare as prepare_module
from lightning_motif.data.prepare import PrepareConfig, prepare
from lightning_motif import ablate as ablate_module
from lightning_motif import evaluate as evaluate_module
from lightning_motif import generate as generate_module
from lightning_motif import grow as grow_module
from lightning_motif import sft as sft_module
from lightning_motif.ablation.config import AblationConfig
from lightning_motif.evaluate import EvalConfig
from lightning_motif.generate import GenerateConfig
from lightning_motif.grow import GrowConfig
from lightning_motif.sft import SFTChainConfig, StageFailed
from lightning_motif.interop import convert as convert_module
from lightning_motif.interop.convert import ConvertConfig, convert
from lightning_motif.module import MotifLM, NonFiniteTrainingError
from lightning_motif.presets import configure_parsing
from lightning_motif.resume_check import check_checkpoint_matches, continue_newest_run, resolve_checkpoint

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


LITERAL_CHOICES = re.compile(r"Expected a typing\.Literal\[(.*?)\]")
GIVEN_VALUE = re.compile(r"(?:Got value|Given value): (.*)$")


def _summarize_choice_error(lines: list[str]) -> str | None:
    """``<dotted key> = <value>: use one of [...]`` when a value is not one of a Literal field's choices."""
    choices = next((m.group(1) for line in lines if (m := LITERAL_CHOICES.search(line))), None)
    value = next((m.group(1) for line in lines if (m := GIVEN_VALUE.search(line))), None)
    if choices is None or value is None:
        return None
    keys = [m.group(1) for line in lines for m in re.finditer(r'Parser key "([^"]+)"', line)]
    return f"{'.'.join(keys)} = {value!r}: use one of [{choices}]"


def summarize_parse_error(message: str) -> str:
    """One line out of jsonargparse's multi-line report: the key, the innermost reason and, for a component
    class_path, the implementations that exist."""
    lines = [line.strip(" -") for line in str(message).splitlines() if line.strip(" -")]
    if not lines:
        return "invalid arguments"
    choice_error = _summarize_choice_error(lines)
    if choice_error is not None:
        return choice_error
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


@dataclass(frozen=True)
class ProjectCommand:
    """A subcommand that is not a Trainer method: its help line, the module whose docstring is its ``--help``,
    its config dataclass (flags, or ``--config`` YAML), the list flags that may repeat (each adds one item), the
    directions it takes first (convert: import or export) and what runs it with the config."""

    help: str
    module: ModuleType
    config: type
    run: Callable
    repeatable: tuple[str, ...] = ()
    directions: dict[str, str] = field(default_factory=dict)

    def parser(self, name: str) -> LightningArgumentParser:
        parser = _OneLineErrorParser(prog=f"motif {name}", description=self.module.__doc__)
        if self.directions:
            parser.add_argument("direction", choices=list(self.directions),
                                help="; ".join(f"{key}: {text}" for key, text in self.directions.items()))
        parser.add_argument("-c", "--config", action=ActionConfigFile, help="Path to a YAML config file.")
        parser.add_class_arguments(self.config)
        return parser

    def __call__(self, name: str, args: list[str]) -> None:
        args = [arg + "+" if arg in self.repeatable else arg for arg in args]  # jsonargparse's append
        parser = self.parser(name)
        parsed = parser.instantiate(parser.parse_args(args))
        config = self.config(**{f.name: parsed[f.name] for f in fields(self.config)})
        self.run(*([parsed.direction] if self.directions else []), config)


def _convert(direction: str, config: ConvertConfig) -> None:
    print(f"[convert] {direction}: {convert(direction, config)}")


PROJECT_COMMANDS = {
    "prepare": ProjectCommand("Tokenize raw corpora into litdata token shards, one folder per split and domain.",
                              prepare_module, PrepareConfig, prepare),
    "convert": ProjectCommand("Import a Hugging Face Motif-2 checkpoint, or export a checkpoint to that layout.",
                              convert_module, ConvertConfig, _convert,
                              directions={"import": "Hugging Face folder -> checkpoint",
                                          "export": "checkpoint -> Hugging Face folder"}),
    "generate": ProjectCommand("Generate text from a checkpoint (key/value cache, greedy or sampled).",
                               generate_module, GenerateConfig, generate_module.run, repeatable=("--prompt", "--stop")),
    "eval": ProjectCommand("Score a checkpoint: lm-evaluation-harness tasks and per-domain perplexity.",
                           evaluate_module, EvalConfig, evaluate_module.run, repeatable=("--tasks",)),
    "grow": ProjectCommand("Grow a trained model into a larger one that computes the same function (width, depth).",
                           grow_module, GrowConfig, grow_module.run),
    "sft": ProjectCommand("Run the three supervised fine-tuning stages, each from the previous stage's weights.",
                          sft_module, SFTChainConfig, sft_module.run),
    "ablate": ProjectCommand("Run an ablation grid (variants x learning rates x seeds) and report what it shows.",
                             ablate_module, AblationConfig, ablate_module.run,
                             directions={"run": "train the grid's unfinished runs, then report",
                                         "report": "the table and plots from the runs' logs"}),
}


class MotifCLI(LightningCLI):
    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """fit, validate and test; not Lightning's predict (the model returns a loss, not predictions)."""
        return {name: skip for name, skip in LightningCLI.subcommands().items() if name != "predict"}

    def init_parser(self, **kwargs) -> LightningArgumentParser:
        parser = _OneLineErrorParser(**kwargs)
        parser.add_argument("-c", "--config", action=ActionConfigFile, help="Path to a YAML config file.")
        return parser

    def setup_parser(self, add_subcommands: bool, main_kwargs: dict, subparser_kwargs: dict) -> None:
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
        if add_subcommands:  # listed by ``motif --help``; main() runs them without the Trainer
            for name, command in PROJECT_COMMANDS.items():
                self.parser._subcommands_action.add_subcommand(name, command.parser(name), help=command.help)

    def before_instantiate_classes(self) -> None:
        """``--ckpt_path last`` without a logger version continues the newest run that has a checkpoint, in its
        own folder (logs, config and checkpoints together), instead of opening a new, empty one."""
        config = self.config.get(self.subcommand)
        if config is not None and config.get("ckpt_path") == "last":
            continue_newest_run(config.trainer)

    def _parse_ckpt_path(self) -> None:
        """LightningCLI would replace the model config by the hyper-parameters saved in the ``--ckpt_path``
        checkpoint; here the config given is the config used, and a checkpoint of another model shape is refused
        (``_check_before_run``, for every path form)."""

    def _check_before_run(self) -> None:
        """Data, run-length and checkpoint checks, before the trainer starts (and so before anything is written)."""
        check_fits = getattr(self.datamodule, "check_fits", None)
        if check_fits is not None:
            check_fits(self.model)
        if self.subcommand == "fit" and hasattr(self.datamodule, "check_max_steps"):
            self.datamodule.check_max_steps(self.trainer.max_steps)
        if getattr(self.model, "init_weights_from", None) is not None:
            self.model.initial_weights()
        checkpoint = resolve_checkpoint(self.trainer, self.config[self.subcommand].get("ckpt_path"), self.subcommand)
        if checkpoint is not None:
            check_checkpoint_matches(checkpoint, self.model.hparams.get("transformer"), self.subcommand)

    before_fit = before_validate = before_test = _check_before_run

    def _run_subcommand(self, subcommand: str) -> None:
        """Run ``subcommand``; a run that fails before its first optimizer step leaves no run folder behind (the
        topmost folder of its log dir that did not exist before, unless it holds a checkpoint)."""
        fresh = _first_missing_folder(Path(self.trainer.log_dir)) if self.trainer.log_dir else None
        try:
            super()._run_subcommand(subcommand)
        except BaseException:
            if fresh is not None and fresh.is_dir() and self.trainer.is_global_zero and self.trainer.global_step == 0 \
                    and not any(fresh.rglob("*.ckpt")):
                shutil.rmtree(fresh, ignore_errors=True)
            raise


def _first_missing_folder(path: Path) -> Path | None:
    """The topmost folder on ``path`` that does not exist yet (None when ``path`` exists)."""
    missing = None
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing = folder
    return missing


def check_yaml_files(args: list[str]) -> None:
    """Raise ConfigError for an argument that names a YAML file which does not parse, with its file, line and
    column (the config parser reads files as strings and would report neither)."""
    for arg in args:
        path = Path(arg.split("=", 1)[-1])
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            continue
        text = path.read_text()
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "it"
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            hint = " (YAML indents with spaces, not tabs)" if "\t" in text else ""
            raise ConfigError("config", "file", str(path), f"{where}: {problem}{hint}") from None


def config_error_within(error: BaseException) -> str | None:
    """The message of a ConfigError that ``error`` was raised from or, for jsonargparse's union report, quotes."""
    seen = error
    while seen is not None:
        if isinstance(seen, ConfigError):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    quoted = [line.strip(" -") for line in str(error).splitlines() if CONFIG_ERROR_LINE.match(line.strip(" -"))]
    return quoted[0] if quoted else None


def _error(prefix: str, message: str) -> None:
    """One line on stderr, from one process: other ranks of a multi-process run fail alike but stay silent."""
    if rank_zero_only.rank == 0:
        print(f"motif: {prefix}: {message}", file=sys.stderr)


def main(args: list[str] | None = None) -> None:
    """``args`` replaces the command line (tests and scripts); None reads ``sys.argv``."""
    given = sys.argv[1:] if args is None else args
    configure_parsing()
    try:
        check_yaml_files(given)
        if given[:1] and given[0] in PROJECT_COMMANDS:
            PROJECT_COMMANDS[given[0]](given[0], given[1:])
            return
        MotifCLI(
            MotifLM,
            LightningDataModule,  # the curriculum (pre-training) and SFTDataModule (packed conversations)
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"description": "lightning-motif: train, evaluate, prepare data and convert checkpoints of Motif-2 models"},
            trainer_defaults={
                "callbacks": [
                    LearningRateMonitor(logging_interval="step"),
                    TokenThroughputMonitor(),
                    ModelStatisticsMonitor(),
                    CurriculumMonitor(),
                ],
            },
            args=args,  # None: LightningCLI reads sys.argv itself (and warns only when both are given)
        )
    except ValueError as error:  # a ConfigError, or jsonargparse's report of one raised while it instantiated
        reason = config_error_within(error)
        if reason is None:
            raise
        _error("error", reason)
        sys.exit(EXIT_CONFIG_ERROR)
    except (NonFiniteTrainingError, StageFailed) as error:
        _error("stopped", str(error))
        sys.exit(EXIT_STOPPED)


if __name__ == "__main__":
    main()
