"""Read a model preset (``experiments/presets/*.yaml``: the fields of ``ModelConfig``) outside the CLI."""

from pathlib import Path

from jsonargparse import ArgumentParser, set_parsing_settings

from components.attention.base import AttentionConfig
from components.mlp.base import MLPConfig
from components.model import ModelConfig


def enable_component_subclasses() -> None:
    """Component configs are dataclasses; let YAML pick a subclass (an implementation) by class_path."""
    set_parsing_settings(subclasses_enabled=[AttentionConfig, MLPConfig])


def load_model_config(path: str | Path) -> ModelConfig:
    enable_component_subclasses()
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--transformer", type=ModelConfig)
    config = parser.parse_args([f"--transformer={Path(path).read_text()}"])
    return parser.instantiate(config).transformer
