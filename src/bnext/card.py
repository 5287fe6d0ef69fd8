"""The model card: what a trained model is and what input it expects, stored once.

A card travels in every checkpoint (``payload["card"]``) and every ``.bnx`` header
(``header["card"]``); commands read the model name, its kwargs, the class count and
names, and the input normalization and size from it instead of re-deriving them
from a dataset name or checking them in several places.
"""

from __future__ import annotations

from collections.abc import Mapping
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
        if "num_classes" in self.kwargs:
            raise ValueError("num_classes belongs to the card, not to its kwargs")

    @classmethod
    def from_create_kwargs(
        cls, model: str, kwargs: Mapping[str, Any], default_classes: int = 1000, **facts: Any
    ) -> ModelCard:
        """A card from ``create_model``-style arguments (``num_classes`` among the kwargs, else ``default_classes``)."""
        rest = dict(kwargs)
        return cls(model, int(rest.pop("num_classes", default_classes)), rest, **facts)

    def create_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``bnext.create_model(card.model, **card.create_kwargs())``."""
        return {"num_classes": self.num_classes, **self.kwargs}

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCard:
        return cls(
            model=data["model"],
            num_classes=int(data["num_classes"]),
            kwargs=dict(data.get("kwargs", {})),
            classes=list(data.get("classes", [])),
            mean=tuple(data.get("mean", IMAGENET_MEAN)),
            std=tuple(data.get("std", IMAGENET_STD)),
            input_size=data.get("input_size"),
            dataset=data.get("dataset"),
        )


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
    data = (payload.get("config") or {}).get("data", {})
    mean, std = input_stats(data.get("dataset", "imagenet"))
    return ModelCard.from_create_kwargs(
        name, payload.get("model_kwargs") or {}, payload.get("num_classes", 1000),
        classes=list(payload.get("classes", [])), mean=mean, std=std, input_size=data.get("image_size"),
        dataset=data.get("dataset"),
    )  # fmt: skip


def check_class_count(expected: int, found: int, what: str, fix: str) -> None:
    """The one class-count check: ``what`` has ``found`` classes where ``expected`` were needed."""
    if expected != found:
        raise UserError(f"{what} has {found} classes but {expected} are needed: {fix}")
