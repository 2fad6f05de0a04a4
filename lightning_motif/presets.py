"""Read typed configs (model presets in ``experiments/presets/*.yaml``, schedules) outside the CLI."""

from pathlib import Path
from typing import TypeVar

from jsonargparse import ArgumentParser, set_parsing_settings

from components.attention.base import AttentionConfig
from components.mlp.base import MLPConfig
from components.model import ModelConfig

T = TypeVar("T")


def configure_parsing() -> None:
    """Component configs are dataclasses: let YAML pick a subclass (an implementation) by class_path, and show
    each field's docstring in ``--help``."""
    set_parsing_settings(subclasses_enabled=[AttentionConfig, MLPConfig], docstring_parse_attribute_docstrings=True)


def parse_config(cls: type[T], yaml_text: str) -> T:
    """Build ``cls`` from YAML the way the ``motif`` CLI would (class_path subclasses, type checks)."""
    configure_parsing()
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--value", type=cls)
    return parser.instantiate(parser.parse_args([f"--value={yaml_text}"])).value


def load_model_config(path: str | Path) -> ModelConfig:
    return parse_config(ModelConfig, Path(path).read_text())


def as_model_config(value: object) -> ModelConfig:
    """A ModelConfig from either form a checkpoint's hyper-parameters hold it in: the dataclass itself, or (from
    ``motif fit``, whose LightningCLI saves the parsed config) its class_path / init_args dict."""
    if isinstance(value, ModelConfig):
        return value
    import json

    return parse_config(ModelConfig, json.dumps(value))
