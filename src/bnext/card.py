"""The model card: what a trained model is and what input it expects, stored once.

A card travels in every checkpoint (``payload["card"]``) and every ``.bnx`` header
(``header["card"]``); commands read the model name, its kwargs, the class count and
names, and the input normalization and size from it instead of re-deriving them
from a dataset name or checking them in several places.
"""

from __future__ import annotations

import copy
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from bnext.data.stats import IMAGENET_MEAN, IMAGENET_STD, input_stats
from bnext.errors import UserError


@dataclass(frozen=True)
class ModelCard:
    """Registry name and kwargs, classes, and input mean / std (in [0, 1] units) and size."""

    model: str
    num_classes: int
    kwargs: dict[str, Any] = field(default_factory=dict)  # create_model arguments other than num_classes
    classes: list[str] = field(default_factory=list)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    input_size: int | None = None
    dataset: str | None = None

    def __post_init__(self) -> None:
        bad = [name for name, valid in _FIELD_CHECKS.items() if not valid(getattr(self, name))]
        if bad:  # a card read from a file can hold anything
            fields = ", ".join(f"{name}={reprlib.repr(getattr(self, name))}" for name in bad)
            raise UserError(
                f"the model card has invalid {fields}: the file is damaged or was not written by bnext; "
                "use an intact copy (or re-export / re-train it)"
            )
        if "num_classes" in self.kwargs:
            raise ValueError("num_classes belongs to the card, not to its kwargs")

    @classmethod
    def from_create_kwargs(
        cls, model: str, kwargs: Mapping[str, Any], default_classes: int = 1000, **facts: Any
    ) -> ModelCard:
        """A card from ``create_model``-style arguments (``num_classes`` among the kwargs, else ``default_classes``)."""
        rest = dict(kwargs)
        return cls(model, rest.pop("num_classes", default_classes), rest, **facts)

    def create_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``bnext.create_model(card.model, **card.create_kwargs())``."""
        return {"num_classes": self.num_classes, **self.kwargs}

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCard:
        """The card ``as_dict`` wrote; the card's checks name any field of the wrong type."""
        return cls(
            model=data.get("model"),
            num_classes=data.get("num_classes"),
            kwargs=copy.copy(data.get("kwargs", {})),
            classes=copy.copy(data.get("classes", [])),
            mean=_as_tuple(data.get("mean", IMAGENET_MEAN)),
            std=_as_tuple(data.get("std", IMAGENET_STD)),
            input_size=data.get("input_size"),
            dataset=data.get("dataset"),
        )


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _numbers(value: Any) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) >= 1
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )


_FIELD_CHECKS: dict[str, Callable[[Any], bool]] = {
    "model": lambda v: isinstance(v, str) and bool(v),
    "num_classes": _is_count,
    "kwargs": lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v),
    "classes": lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v),
    "mean": _numbers,
    "std": lambda v: _numbers(v) and all(s > 0 for s in v),
    "input_size": lambda v: v is None or _is_count(v),
    "dataset": lambda v: v is None or isinstance(v, str),
}


def card_from_payload(payload: Mapping[str, Any]) -> ModelCard | None:
    """The card of a checkpoint dict or ``.bnx`` header; None for a foreign file without one.

    Files written before cards existed carry ``model_name`` / ``model_kwargs`` (and the
    training config); their card is rebuilt from those.
    """
    if isinstance(payload.get("card"), Mapping):
        return ModelCard.from_dict(payload["card"])
    name = payload.get("model_name") or payload.get("model")
    if not isinstance(name, str):
        return None
    kwargs, config = payload.get("model_kwargs") or {}, payload.get("config")
    if not isinstance(kwargs, Mapping):
        raise UserError(
            f"model_kwargs {reprlib.repr(kwargs)} is not a mapping: the file is damaged; use an intact copy"
        )
    data = config.get("data") if isinstance(config, Mapping) else None
    data = data if isinstance(data, Mapping) else {}
    dataset = data.get("dataset")
    mean, std = input_stats(dataset if isinstance(dataset, str) else "imagenet")
    return ModelCard.from_create_kwargs(
        name, kwargs, payload.get("num_classes", 1000), classes=payload.get("classes", []), mean=mean, std=std,
        input_size=data.get("image_size"), dataset=dataset,
    )  # fmt: skip


def check_class_count(expected: int, found: int, what: str, fix: str) -> None:
    """The one class-count check: ``what`` has ``found`` classes where ``expected`` were needed."""
    if expected != found:
        raise UserError(f"{what} has {found} classes but {expected} are needed: {fix}")
