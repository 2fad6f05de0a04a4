"""Optimizers, parameter routing and learning-rate schedules."""
