"""The one error type every config check raises, so the CLI can print it as a single line."""


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
