"""Train a byte-level BPE tokenizer with Hugging Face ``tokenizers``."""

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, eos_token: str, path: Path,
                        extra_special_tokens: tuple[str, ...] = ()) -> Tokenizer:
    """Byte-level BPE (every byte is representable, so no text is out of vocabulary) with ``eos_token`` (and
    ``extra_special_tokens``, e.g. a chat template's turn markers) as special tokens; saved to ``path``."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[eos_token, *extra_special_tokens], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.save(str(path))
    return tokenizer
