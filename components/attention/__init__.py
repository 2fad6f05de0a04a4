"""Attention implementations, chosen in YAML by the class_path of their config."""

from components.attention.base import Attention, AttentionConfig
from components.attention.differential import DifferentialAttention, DifferentialAttentionConfig
from components.attention.gqa import GroupedQueryAttention, GroupedQueryAttentionConfig
from components.attention.grouped_differential import (
    GroupedDifferentialAttention,
    GroupedDifferentialAttentionConfig,
)

__all__ = [
    "Attention",
    "AttentionConfig",
    "DifferentialAttention",
    "DifferentialAttentionConfig",
    "GroupedDifferentialAttention",
    "GroupedDifferentialAttentionConfig",
    "GroupedQueryAttention",
    "GroupedQueryAttentionConfig",
]
