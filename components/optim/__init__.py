"""Optimizers, parameter routing and learning-rate schedules."""

from components.optim.muon_clip import MuonClip
from components.optim.schedules import WarmupStableDecayLR

__all__ = ["MuonClip", "WarmupStableDecayLR"]
