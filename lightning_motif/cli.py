"""The ``motif`` command: LightningCLI with the Motif model, data modules and dashboard callbacks.

    motif fit --config experiments/quickstart.yaml
    motif fit --config experiments/quickstart.yaml --model.transformer.attention=components.attention.GroupedQueryAttentionConfig
    motif fit --config experiments/quickstart.yaml --print_config

A bad config stops before any compute with one line on stderr (``motif: error: <field>: <fix>``) and exit status 2.
"""

import sys

from jsonargparse import ActionConfigFile, set_parsing_settings
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from components.attention.base import AttentionConfig
from components.config_error import ConfigError
from components.mlp.base import MLPConfig
from lightning_motif.callbacks import ModelStatisticsMonitor, TokenThroughputMonitor
from lightning_motif.data.datamodule import TokenShardDataModule
from lightning_motif.module import MotifLM

EXIT_CONFIG_ERROR = 2


class _OneLineErrorParser(LightningArgumentParser):
    """Reports a parse error as a single line instead of the usage text followed by the error."""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error:  # jsonargparse parses subcommands with exceptions and retries
            return super().error(message, ex)
        first_line = next((line.strip() for line in str(message).splitlines() if line.strip()), "invalid arguments")
        print(f"motif: error: {first_line}", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)


class MotifCLI(LightningCLI):
    def init_parser(self, **kwargs) -> LightningArgumentParser:
        parser = _OneLineErrorParser(**kwargs)
        parser.add_argument("-c", "--config", action=ActionConfigFile, help="Path to a YAML config file.")
        return parser


def main(args: list[str] | None = None) -> None:
    # Component configs are dataclasses; let YAML pick a subclass (an implementation) by class_path.
    set_parsing_settings(subclasses_enabled=[AttentionConfig, MLPConfig])
    try:
        MotifCLI(
            MotifLM,
            TokenShardDataModule,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={
                "callbacks": [
                    LearningRateMonitor(logging_interval="step"),
                    TokenThroughputMonitor(),
                    ModelStatisticsMonitor(),
                ],
            },
            args=args,
        )
    except ConfigError as error:
        print(f"motif: error: {error}", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)


if __name__ == "__main__":
    main()
