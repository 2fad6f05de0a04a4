"""A Hugging Face tokenizer folder (or a lone tokenizer.json) for generation and evaluation: encoding, decoding,
the end-of-sequence ids (tokenizer_config.json, generation_config.json) and the chat template, rendered as the
``transformers`` library renders it (a sandboxed Jinja environment with ``messages``, ``add_generation_prompt``
and the special tokens)."""

import json
from pathlib import Path

from components.config_error import ConfigError
from lightning_motif.data.token_dataset import TOKENIZER

GENERATION_CONFIG = "generation_config.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"


def folder_chat_template(config: dict, folder: Path) -> str | None:
    """A tokenizer folder's chat template: tokenizer_config.json's ``chat_template``, else chat_template.jinja (as
    newer ``transformers`` versions save it)."""
    template = config.get("chat_template")
    if isinstance(template, str) and template:
        return template
    jinja = folder / CHAT_TEMPLATE_FILE
    return jinja.read_text() if jinja.is_file() else None


def token_text(value) -> str | None:
    """A special token's text from tokenizer_config.json (a string, or an AddedToken's content)."""
    return value.get("content") if isinstance(value, dict) else value


class TextTokenizer:
    def __init__(self, path: str | Path, field: str = "tokenizer") -> None:
        from tokenizers import Tokenizer

        given = Path(path).expanduser()
        folder = given if given.is_dir() else given.parent
        file = given / TOKENIZER if given.is_dir() else given
        if not file.is_file():
            raise ConfigError("tokenizer", field, str(path), "no tokenizer.json there: give a tokenizer folder or file")
        try:
            self.tokenizer = Tokenizer.from_file(str(file))
        except Exception as error:  # tokenizers raises its own exception type for a truncated or foreign file
            raise ConfigError("tokenizer", field, str(path), f"cannot be read as a tokenizer.json ({error})") from error
        config = json.loads((folder / TOKENIZER_CONFIG).read_text()) if (folder / TOKENIZER_CONFIG).is_file() else {}
        generation = json.loads((folder / GENERATION_CONFIG).read_text()) if (folder / GENERATION_CONFIG).is_file() else {}
        self.chat_template: str | None = folder_chat_template(config, folder)
        self.special = {key: token_text(config.get(key)) for key in ("bos_token", "eos_token")}
        eos = {self.tokenizer.token_to_id(self.special["eos_token"])} if self.special["eos_token"] else set()
        from_generation = generation.get("eos_token_id", [])
        eos.update(from_generation if isinstance(from_generation, list) else [from_generation])
        if not eos and self.tokenizer.token_to_id("<|endoftext|>") is not None:  # the BPE motif prepare trains
            eos.add(self.tokenizer.token_to_id("<|endoftext|>"))
        self.eos_ids = tuple(sorted(i for i in eos if i is not None))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True,
                            template: str | None = None) -> str:
        """The conversation as the model was trained to read it (the folder's chat template, or ``template``)."""
        template = template or self.chat_template
        if not template:
            raise ConfigError("tokenizer", "chat_template", None, "the tokenizer folder has no chat template "
                              "(tokenizer_config.json): give plain prompts, or a tokenizer folder with one")
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str):
            raise ConfigError("tokenizer", "chat_template", "raise_exception", message)

        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        environment.globals["raise_exception"] = raise_exception
        return environment.from_string(template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, **{k: v or "" for k, v in self.special.items()})
