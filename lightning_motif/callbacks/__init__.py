"""Callbacks: what a researcher watches on the TensorBoard dashboard, and checkpoints that survive a kill."""

from lightning_motif.callbacks.checkpoint import MotifCheckpoint
from lightning_motif.callbacks.curriculum import CurriculumMonitor
from lightning_motif.callbacks.harness import HarnessTaskMonitor
from lightning_motif.callbacks.model_statistics import ModelStatisticsMonitor
from lightning_motif.callbacks.throughput import TokenThroughputMonitor

__all__ = ["CurriculumMonitor", "HarnessTaskMonitor", "MotifCheckpoint", "ModelStatisticsMonitor", "TokenThroughputMonitor"]
