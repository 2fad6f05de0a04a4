"""Interop with the released Motif-2 checkpoints (Hugging Face layout): config.json, weights, ``motif convert``."""
