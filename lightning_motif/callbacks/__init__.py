"""Callbacks that put what a researcher watches on the TensorBoard dashboard."""

from lightning_motif.callbacks.curriculum import CurriculumMonitor
from lightning_motif.callbacks.model_statistics import ModelStatisticsMonitor
from lightning_motif.callbacks.throughput import TokenThroughputMonitor

__all__ = ["CurriculumMonitor", "ModelStatisticsMonitor", "TokenThroughputMonitor"]
