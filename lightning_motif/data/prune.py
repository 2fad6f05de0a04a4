"""Stage 3's data: the stage-2 conversations with redundant and low-value samples removed (the Motif-2 report,
arXiv 2511.07464, Sec. 5, prunes its stage-2 data for the last stage without publishing the rule; this one is
ours). Deterministic, in input order:

1. near-duplicates: a conversation whose normalised text (roles and contents, case folded, every run of
   whitespace and punctuation collapsed) was already kept is dropped (``near_duplicate``);
2. low value: a conversation whose assistant turns hold fewer than ``min_assistant_chars`` characters in all
   is dropped (``low_value``).

Broken records are counted like ``motif prepare`` counts them. The output .jsonl is written whole, then its
manifest (``<output>.manifest.json``: the config and every count).
"""

import hashlib
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from components.config_error import ConfigError
from lightning_motif.data.chat import valid_messages

SEPARATORS = re.compile(r"[\W_]+")


@dataclass(kw_only=True)
class PruneConfig:
    """Which conversations to read and where the kept ones go."""

    inputs: list[str]
    """.jsonl files of chat records (``{"messages": [...]}``)."""
    output: str
    """The pruned .jsonl; its manifest is written beside it."""
    min_assistant_chars: int = 20
    """Conversations whose assistant turns have fewer characters in all are dropped (our choice)."""
    messages_field: str = "messages"


def normalised_key(messages: list[dict]) -> str:
    text = "\x00".join(f"{m['role']}\x01{SEPARATORS.sub(' ', m['content'].casefold()).strip()}" for m in messages)
    return hashlib.sha256(text.encode()).hexdigest()


def prune(config: PruneConfig) -> dict:
    """Write the kept conversations and the manifest; return the manifest."""
    for raw in config.inputs:
        if not Path(raw).is_file():
            raise ConfigError("PruneConfig", "inputs", raw, "no such .jsonl file: fix the path")
    if config.min_assistant_chars < 0:
        raise ConfigError("PruneConfig", "min_assistant_chars", config.min_assistant_chars, "use 0 or more")
    counts, seen, kept = Counter(), set(), []
    for raw in config.inputs:
        with open(raw, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    continue
                counts["read"] += 1
                try:
                    record = json.loads(line)
                except ValueError:
                    counts["invalid_json"] += 1
                    continue
                messages = valid_messages(record.get(config.messages_field) if isinstance(record, dict) else None, counts)
                if messages is None:
                    continue
                key = normalised_key(messages)
                if key in seen:
                    counts["near_duplicate"] += 1
                elif sum(len(m["content"].strip()) for m in messages if m["role"] == "assistant") < config.min_assistant_chars:
                    counts["low_value"] += 1
                else:
                    seen.add(key)
                    kept.append(json.dumps({config.messages_field: messages}) + "\n")
    counts["kept"] = len(kept)
    output = Path(config.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    partial.write_text("".join(kept), encoding="utf-8")
    partial.replace(output)
    manifest = {"config": asdict(config), "counts": dict(sorted(counts.items()))}
    output.with_name(output.name + ".manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
