"""Feed-forward blocks, chosen in YAML by the class_path of their config."""

from components.mlp.base import MLP, MLPConfig
from components.mlp.polynorm_mlp import PolyNorm, PolyNormMLP, PolyNormMLPConfig
from components.mlp.swiglu import SwiGLU, SwiGLUConfig

__all__ = ["MLP", "MLPConfig", "PolyNorm", "PolyNormMLP", "PolyNormMLPConfig", "SwiGLU", "SwiGLUConfig"]
