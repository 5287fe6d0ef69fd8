"""Checkpoint files: atomic writes, integrity checks, and loading ours or the authors' weights.

Our format is a ``torch.save`` dict with ``format="bnext"``, a ``version``, the
model's registry name and keyword arguments, its ``state_dict`` under ``model``
and a SHA-256 of that state dict, so a damaged file is refused, not loaded.
The authors' ``.pth.tar`` files (``hpi-xnor/BNext``) hold a ``state_dict`` with
DataParallel's ``module.`` prefix and their module names; they are renamed here.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bnext.atomic import atomic_write
from bnext.errors import UserError

FORMAT = "bnext"
VERSION = 1
_MAX_LISTED = 8


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
    model_name: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    **extra: Any,
) -> Path:
    """Write ``model``'s weights (plus any ``extra`` entries) atomically with a checksum."""
    state = {k: v.detach().cpu() for k, v in unwrap_model(model).state_dict().items()}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_name": model_name,
        "model_kwargs": dict(model_kwargs or {}),
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
    except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, pickle.UnpicklingError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({reason}). It is truncated, damaged or not a "
            "PyTorch file: use an earlier checkpoint (e.g. best.pt) or download it again."
        ) from error
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} holds a {type(payload).__name__}, not a checkpoint dict")
    if payload.get("format") == FORMAT:
        if payload.get("version", 0) > VERSION:
            raise CheckpointError(
                f"{path} has format version {payload['version']}; this bnext reads up to {VERSION}: upgrade bnext"
            )
        if state_digest(payload["model"]) != payload.get("model_sha256"):
            raise CheckpointError(f"{path} is corrupt: its weights do not match their stored SHA-256")
    return payload


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


_AUTHORS_BNEXT_RULES = [
    (re.compile(r"^feature\.0\."), "stem."),
    (re.compile(r"^feature\.(\d+)\."), lambda m: f"blocks.{int(m.group(1)) - 1}."),
    (re.compile(r"\.(Attention|FFN_3x3)\."), ".mixer."),
    (re.compile(r"\.(FFN|FFN_1)\."), ".ffn.0."),
    (re.compile(r"\.FFN_2\."), ".ffn.1."),
    (re.compile(r"\.se\.se\."), ".se.gate."),
]
_AUTHORS_BNEXT18_RULES = [
    (re.compile(r"\.Attention\.downsample\."), ".mixer.shortcut."),
    (re.compile(r"\.Attention\."), ".mixer."),
    (re.compile(r"\.FFN\."), ".ffn."),
    (re.compile(r"\.se\.se\."), ".se.gate."),
]


def from_authors_names(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the module paths of the authors' BNext / BNext-18 code to ours (others pass through)."""
    if any(k.startswith("feature.") for k in state):
        rules = _AUTHORS_BNEXT_RULES
    elif any(".Attention." in k for k in state):
        rules = _AUTHORS_BNEXT18_RULES
    else:
        return dict(state)
    renamed = {}
    for key, value in state.items():
        for pattern, replacement in rules:
            key = pattern.sub(replacement, key)
        renamed[key] = value
    return renamed


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / DataParallel / torch.compile wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


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


def model_from_checkpoint(path: str | Path, **overrides: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Build the registered model a bnext checkpoint names and load its weights."""
    from bnext.models import create_model

    payload = read_checkpoint(path)
    name = payload.get("model_name")
    if not name:
        raise CheckpointError(
            f"{path} does not name its model (a foreign checkpoint?): build the model with "
            "bnext.create_model(name, num_classes=..., checkpoint=path) instead"
        )
    model = create_model(name, **{**payload.get("model_kwargs", {}), **overrides})
    if payload.get("quant_config"):
        from bnext.quant import quantize_model

        quantize_model(model, payload["quant_config"])
    state = from_authors_names(extract_state_dict(payload))
    check_compatible(model, state, str(path))
    model.load_state_dict(state, strict=True)
    return model, payload
