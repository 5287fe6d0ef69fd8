"""Checkpoint files: atomic writes, integrity checks, and loading weights (ours or the authors') into a model.

Our format is a ``torch.save`` dict with ``format="bnext"``, a ``version``, the
model's registry name and keyword arguments, its ``state_dict`` under ``model``
and a SHA-256 of that state dict, so a damaged file is refused, not loaded.
The authors' ``.pth.tar`` files are renamed by ``bnext.authors_weights``; building
the model a checkpoint names is ``bnext.loading.model_from_checkpoint``.
"""

from __future__ import annotations

import hashlib
import reprlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bnext.atomic import atomic_write
from bnext.authors_weights import from_authors_names
from bnext.card import ModelCard, card_from_payload
from bnext.errors import UserError
from bnext.nn.wrappers import unwrap_model

FORMAT = "bnext"
VERSION = 1
_MAX_LISTED = 8
_DAMAGED = (
    "It is truncated, damaged or not a PyTorch file: use an earlier checkpoint (e.g. best.pt) or download it again."
)


class CheckpointError(UserError):
    """A checkpoint is missing, damaged, foreign or does not fit the model."""


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of a state dict."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temp file in the same folder, fsync, then rename over ``path``."""
    return atomic_write(path, lambda handle: torch.save(obj, handle))


def save_checkpoint(
    model: nn.Module,
    path: str | Path,
    *,
    card: ModelCard | None = None,
    model_name: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    **extra: Any,
) -> Path:
    """Write ``model``'s weights (plus any ``extra`` entries) atomically with a checksum.

    The model card (``card``, or one made from ``model_name`` / ``model_kwargs``) is
    stored once, under ``"card"``; ``bnext.card.card_from_payload`` reads it back.
    """
    state = {k: v.detach().cpu() for k, v in unwrap_model(model).state_dict().items()}
    if card is None and model_name is not None:
        default_classes = getattr(unwrap_model(model), "num_classes", 1000)
        card = ModelCard.from_create_kwargs(model_name, model_kwargs or {}, default_classes)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "card": card.as_dict() if card is not None else None,
        "model": state,
        "model_sha256": state_digest(state),
        **extra,
    }
    return atomic_save(payload, path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file as a dict, verifying our checksum when present."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}: check the path (or train one with `bnext train`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged pickle fails in many ways (IndexError, KeyError, TypeError, ...)
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(error).__name__}: {reason}). {_DAMAGED}"
        ) from error
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} holds a {type(payload).__name__}, not a checkpoint dict")
    if payload.get("format") == FORMAT:
        _check_our_payload(payload, path)
    try:
        card_from_payload(payload)
    except UserError as error:
        raise CheckpointError(f"{path}: {error}") from error
    return payload


def _check_our_payload(payload: dict[str, Any], path: Path) -> None:
    """The fields every bnext checkpoint has, with their types, and the weights' SHA-256."""
    version, state = payload.get("version"), payload.get("model")
    if type(version) is not int:
        raise CheckpointError(f"{path} has format version {reprlib.repr(version)}, not an integer. {_DAMAGED}")
    if version > VERSION:
        raise CheckpointError(f"{path} has format version {version}; this bnext reads up to {VERSION}: upgrade bnext")
    tensors = isinstance(state, dict) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    )
    if not tensors:
        raise CheckpointError(f"{path} has no model weights (a dict of tensors under 'model'). {_DAMAGED}")
    if state_digest(state) != payload.get("model_sha256"):
        raise CheckpointError(f"{path} is corrupt: its weights do not match their stored SHA-256. {_DAMAGED}")
    if not isinstance(payload.get("config") or {}, dict):
        raise CheckpointError(f"{path} has a stored config that is not a mapping. {_DAMAGED}")


def extract_state_dict(payload: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint dict (ours, the authors', or a bare state dict)."""
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(payload.get(key), Mapping):
            state = dict(payload[key])
            break
    else:
        if payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
            state = dict(payload)
        else:
            raise CheckpointError(
                f"no model weights found (looked for 'model', 'state_dict'; keys: {sorted(payload)[:10]})"
            )
    return {_strip_wrappers(k): v for k, v in state.items()}


def _strip_wrappers(key: str) -> str:
    for prefix in ("module.", "_orig_mod."):
        while key.startswith(prefix):
            key = key[len(prefix) :]
    return key


def check_compatible(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise a CheckpointError naming missing / unexpected keys and shape mismatches."""
    expected = unwrap_model(model).state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if items:
            shown = ", ".join(items[:_MAX_LISTED])
            more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
            problems.append(f"{len(items)} {label}: {shown}{more}")
    if problems:
        raise CheckpointError(
            f"{source} does not fit {type(unwrap_model(model)).__name__}: "
            + "; ".join(problems)
            + ". Check the model name, num_classes and stem_stride the checkpoint was trained with."
        )


def load_checkpoint(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load weights from ``path`` into ``model`` (all or nothing); return the checkpoint dict."""
    payload = read_checkpoint(path)
    state = from_authors_names(extract_state_dict(payload))
    check_compatible(model, state, str(path))
    unwrap_model(model).load_state_dict(state, strict=True)
    return payload
