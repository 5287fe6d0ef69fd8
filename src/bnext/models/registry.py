"""Model registry in the style of timm: ``register_model``, ``create_model``, ``list_models``."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from pathlib import Path

from torch import nn

from bnext.checkpoint import load_checkpoint
from bnext.errors import UserError

ModelFactory = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelFactory] = {}


def register_model(factory: ModelFactory) -> ModelFactory:
    """Decorator: register ``factory`` under its function name."""
    name = factory.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = factory
    return factory


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models matching a shell-style ``pattern``."""
    return sorted(name for name in _REGISTRY if fnmatch.fnmatch(name, pattern))


def is_model(name: str) -> bool:
    return name in _REGISTRY


def create_model(
    name: str, num_classes: int = 1000, *, checkpoint: str | Path | None = None, **kwargs: object
) -> nn.Module:
    """Build model ``name``; load ``checkpoint`` (ours or the authors') when given.

    Extra keyword arguments go to the model family (e.g. ``stem_stride=1`` for
    32 px inputs, ``elm_attention=False`` for the Table 4 ablation).
    """
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"unknown model {name!r}.{hint} Known models: {', '.join(list_models())}")
    model = _REGISTRY[name](num_classes=num_classes, **kwargs)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model
