"""bnext: accurate and fast binary neural networks (BNext and baselines)."""

from bnext.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bnext.models import create_model, list_models, register_model

__version__ = "0.1.0"
__all__ = [
    "CheckpointError",
    "__version__",
    "create_model",
    "list_models",
    "load_checkpoint",
    "register_model",
    "save_checkpoint",
]
