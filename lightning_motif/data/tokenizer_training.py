"""Train a byte-level BPE tokenizer with Hugging Face ``tokenizers``."""

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, eos_token: str, path: Path) -> Tokenizer:
    """Byte-level BPE (every byte is representable, so no text is out of vocabulary) with ``eos_token`` as its
    only special token; saved to ``path``."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[eos_token], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.save(str(path))
    return tokenizer
