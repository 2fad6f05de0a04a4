"""The one error type every config check raises, so the CLI can print it as a single line."""

import dataclasses
import types
import typing


class ConfigError(ValueError):
    """A config value that cannot work.

    The message names the field as ``Owner.field = value`` and says how to fix it; ``motif`` prints it as
    one line and exits with status 2 before any compute starts.
    """

    def __init__(self, owner: str, field: str, value: object, fix: str) -> None:
        self.owner = owner
        self.field = field
        super().__init__(f"{owner}.{field} = {value!r}: {fix}")


def require(condition: bool, owner: object, field: str, fix: str) -> None:
    """Raise ConfigError naming ``type(owner).field`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(type(owner).__name__, field, getattr(owner, field), fix)


def choices_of(annotation: object) -> tuple | None:
    """The allowed values of a ``Literal[...]`` annotation (with None for ``Literal[...] | None``), else None."""
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        literals = [choices_of(member) for member in members]
        if any(literals):
            return tuple(value for member, found in zip(members, literals)
                         for value in (found or ((None,) if member is type(None) else ())))
    return None


def require_choices(config: object) -> None:
    """Raise ConfigError for a field of the dataclass ``config`` whose value is not one of its ``Literal`` type's
    choices. The command line checks them (jsonargparse); this covers configs built in Python."""
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        choices = choices_of(hints[field.name])
        if choices is not None:
            require_choice(config, field.name, choices)


def require_choice(owner: object, field: str, choices: tuple) -> None:
    """Raise ConfigError naming ``type(owner).field`` unless its value is one of ``choices``."""
    require(getattr(owner, field) in choices, owner, field, f"use one of {list(choices)}")
