"""Model families and the registry."""

from bnext.models import bnext, full_precision, reactnet, resnet18_layout  # noqa: F401  (registers them)
from bnext.models.registry import check_model_kwargs, create_model, is_model, list_models, register_model

__all__ = ["check_model_kwargs", "create_model", "is_model", "list_models", "register_model"]
