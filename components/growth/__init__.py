"""Growing a trained model into a larger one that computes the same function (HyperCloning width, LLaMA-Pro depth)."""

from components.growth.grow import GrowthConfig, GrowthPlan, check_growth, grow

__all__ = ["GrowthConfig", "GrowthPlan", "check_growth", "grow"]
