"""Chat records for supervised fine-tuning: ``{"messages": [{"role": ..., "content": ...}, ...]}`` rendered to
token ids with a loss mask that covers the assistant's tokens only (its content and the end-of-turn marker the
template writes after it; system and user turns and the assistant header are context). The Motif-2 report
(arXiv 2511.07464, Sec. 5) trains its SFT stages on assistant tokens.

The template is the tokenizer folder's chat template (tokenizer_config.json, rendered as ``transformers`` renders
it) or the built-in ``CHATML`` below. Each message's span is found by rendering the conversation up to it (and up
to its header, with ``add_generation_prompt``), so any template that renders a conversation as the concatenation
of its turns works; each span is tokenized on its own, so a mask boundary never falls inside a token.
"""

from collections import Counter
from dataclasses import dataclass

import numpy as np

from lightning_motif.text import TextTokenizer

ROLES = ("system", "user", "assistant")
CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
"""The built-in template (ChatML): ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per turn."""
CHATML_MARKERS = ("<|im_start|>", "<|im_end|>")
"""ChatML's turn markers: special tokens of a BPE that ``motif prepare`` trains for chat domains rendered with it."""


@dataclass(frozen=True)
class ChatSample:
    """One conversation: ``ids`` (int32) and ``trained`` (bool, True where the token is the assistant's)."""

    ids: np.ndarray
    trained: np.ndarray

    def stored(self) -> np.ndarray:
        """The one int32 array a chat dataset keeps: an assistant's (trained) token as its id t >= 0, every other
        token as -(t + 1)."""
        return np.where(self.trained, self.ids, -self.ids - 1).astype(np.int32)


def decode_conversation(stored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(token ids, trained mask) of a conversation in its stored form (``ChatSample.stored``)."""
    trained = stored >= 0
    return np.where(trained, stored, -stored - 1), trained


def template_named(name: str | None) -> str | None:
    """A ``chat_template`` setting as a template: "chatml" is the built-in ``CHATML``; anything else is a Jinja
    template itself (None: none given)."""
    return CHATML if name == "chatml" else name


def valid_messages(messages: object, counts: Counter) -> list[dict] | None:
    """A record's messages (its ``messages`` field), or None (counted by reason: ``missing_field``,
    ``invalid_messages``, ``no_assistant_turn``)."""
    if messages is None:
        counts["missing_field"] += 1
        return None
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) for m in messages):
        counts["invalid_messages"] += 1
        return None
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        counts["no_assistant_turn"] += 1
        return None
    return [{"role": m["role"], "content": m["content"]} for m in messages]


class ChatRenderer:
    """Renders conversations with ``tokenizer``'s chat template, or ``template`` when given (e.g. ``CHATML``)."""

    def __init__(self, tokenizer: TextTokenizer, template: str | None = None) -> None:
        self.tokenizer, self.template = tokenizer, template

    def render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt, self.template)

    def spans(self, messages: list[dict]) -> list[tuple[str, bool]]:
        """The rendered text cut into (piece, trained) spans; ValueError if the template does not render a
        conversation as the concatenation of its turns."""
        spans, done = [], ""
        for i, message in enumerate(messages):
            if message["role"] == "assistant":
                header = self.render(messages[:i], add_generation_prompt=True)
                spans.append((self._after(done, header), False))
                done = header
            text = self.render(messages[: i + 1], add_generation_prompt=False)
            spans.append((self._after(done, text), message["role"] == "assistant"))
            done = text
        return [(piece, trained) for piece, trained in spans if piece]

    @staticmethod
    def _after(done: str, text: str) -> str:
        if not text.startswith(done):
            raise ValueError("the chat template does not render a conversation as the concatenation of its turns")
        return text[len(done):]

    def __call__(self, messages: list[dict]) -> ChatSample:
        ids, trained = [], []
        for piece, is_trained in self.spans(messages):
            encoded = self.tokenizer.encode(piece)
            ids += encoded
            trained += [is_trained] * len(encoded)
        return ChatSample(np.array(ids, dtype=np.int32), np.array(trained, dtype=bool))
