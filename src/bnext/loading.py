"""Building the model a bnext checkpoint names: registry model, PTQ layers if any, weights.

This sits above ``bnext.models``, ``bnext.quant`` and ``bnext.checkpoint`` (none of which
imports it), so the checkpoint file format stays free of model construction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from bnext.authors_weights import from_authors_names
from bnext.card import card_from_payload
from bnext.checkpoint import CheckpointError, check_compatible, extract_state_dict, read_checkpoint
from bnext.errors import UserError
from bnext.models import check_model_kwargs, create_model
from bnext.quant import quantize_model


def model_from_checkpoint(path: str | Path, **overrides: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Build the registered model a bnext checkpoint names and load its weights."""
    payload = read_checkpoint(path)
    card = card_from_payload(payload)
    if card is None:
        raise CheckpointError(
            f"{path} does not name its model (a foreign checkpoint?): build the model with "
            "bnext.create_model(name, num_classes=..., checkpoint=path) instead"
        )
    try:
        check_model_kwargs(card.model, card.kwargs)
    except UserError as error:
        raise CheckpointError(
            f"{path} names a model this bnext cannot build ({error}): use the bnext version that wrote it "
            "or an intact copy"
        ) from error
    model = create_model(card.model, **{**card.create_kwargs(), **overrides})
    if payload.get("quant_config"):
        quantize_model(model, payload["quant_config"])
    state = from_authors_names(extract_state_dict(payload))
    check_compatible(model, state, str(path))
    model.load_state_dict(state, strict=True)
    return model, payload
