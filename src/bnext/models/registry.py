"""Model registry in the style of timm: ``register_model``, ``create_model``, ``list_models``."""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import math
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import overload

from torch import nn

from bnext.checkpoint import load_checkpoint
from bnext.errors import UserError

ModelFactory = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelFactory] = {}
_OPTIONS: dict[str, dict[str, Option]] = {}


@dataclass(frozen=True)
class Option:
    """A keyword a model takes: what its value must be (said in errors) and the check of a value."""

    must_be: str
    valid: Callable[[object], bool]


def _positive_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


POSITIVE_INT = Option("a positive integer", lambda value: type(value) is int and value > 0)
POSITIVE_NUMBER = Option("a positive number", _positive_number)
FLAG = Option("true or false", lambda value: type(value) is bool)
QUANTIZER = Option("a quantizer name (see bnext.nn.quantizers) or module", lambda v: isinstance(v, (str, nn.Module)))
ANY = Option("any value", lambda value: True)


@overload
def register_model(factory: ModelFactory) -> ModelFactory: ...
@overload
def register_model(*, options: Mapping[str, Option]) -> Callable[[ModelFactory], ModelFactory]: ...
def register_model(
    factory: ModelFactory | None = None, *, options: Mapping[str, Option] | None = None
) -> ModelFactory | Callable[[ModelFactory], ModelFactory]:
    """Decorator: register ``factory`` under its function name.

    ``@register_model(options={...})`` declares the keywords it takes besides ``num_classes``
    (needed when it passes ``**kwargs`` on); ``create_model`` refuses any other, or a bad value.
    """

    def register(factory: ModelFactory) -> ModelFactory:
        name = factory.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = factory
        if options is not None:
            _OPTIONS[name] = dict(options)
        return factory

    return register if factory is None else register(factory)


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models matching a shell-style ``pattern``."""
    return sorted(name for name in _REGISTRY if fnmatch.fnmatch(name, pattern))


def is_model(name: str) -> bool:
    return name in _REGISTRY


def model_options(name: str) -> dict[str, Option] | None:
    """The keywords model ``name`` takes besides ``num_classes``; None when unknown (undeclared ``**kwargs``)."""
    if name in _OPTIONS:
        return _OPTIONS[name]
    parameters = inspect.signature(_REGISTRY[name]).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name: ANY for p in parameters if p.kind in named and p.name != "num_classes"}


def check_model_kwargs(name: str, kwargs: Mapping[str, object]) -> None:
    """Raise a UserError for an unknown model, a keyword it does not take (listing those it takes) or a bad value."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"unknown model {name!r}.{hint} Known models: {', '.join(list_models())}")
    options = model_options(name)
    if options is None:
        return
    for key, value in kwargs.items():
        if key not in options:
            close = difflib.get_close_matches(key, options, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UserError(
                f"model {name!r} takes no option {key!r} (model.kwargs.{key}).{hint} Its options are "
                f"{', '.join(sorted(options)) or 'none'}: remove {key!r} or use one of them"
            )
        if not options[key].valid(value):
            raise UserError(
                f"model {name!r}: option {key} (model.kwargs.{key}) must be {options[key].must_be}, "
                f"got {reprlib.repr(value)}"
            )


def create_model(
    name: str, num_classes: int = 1000, *, checkpoint: str | Path | None = None, **kwargs: object
) -> nn.Module:
    """Build model ``name``; load ``checkpoint`` (ours or the authors') when given.

    Extra keyword arguments go to the model family (e.g. ``stem_stride=1`` for
    32 px inputs, ``elm_attention=False`` for the Table 4 ablation); ``check_model_kwargs`` checks them first.
    """
    check_model_kwargs(name, kwargs)
    if not POSITIVE_INT.valid(num_classes):
        raise UserError(f"model {name!r}: num_classes must be a positive integer, got {reprlib.repr(num_classes)}")
    model = _REGISTRY[name](num_classes=num_classes, **kwargs)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model
