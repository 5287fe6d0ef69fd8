"""Analysis tools: cost profiling and loss landscapes."""

from bnext.analysis.profile import LayerCost, ModelCost, profile_model

__all__ = ["LayerCost", "ModelCost", "profile_model"]
