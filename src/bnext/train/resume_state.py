"""Checks on the training state a checkpoint file carries, made before ``Trainer.resume`` applies any of it.

torch checks little of it: an optimizer moment of another shape passes ``load_state_dict`` and then makes
the fused AdamW step read out of bounds; an RNG state of another size fails deep inside torch or numpy.
"""

from __future__ import annotations

import math
import reprlib
from typing import Any

import torch

from bnext.train.rng import describe as _kind
from bnext.train.rng import rng_problem

_SUMS = ("loss", "correct", "seen", "skipped", "data_time", "time")  # Trainer._train_epoch's running sums
_SCALER_FLOATS = ("scale", "growth_factor", "backoff_factor")
_SCALER_INTS = ("growth_interval", "_growth_tracker")


def resume_problem(payload: dict[str, Any], optimizer: torch.optim.Optimizer) -> str | None:
    """The first part of a training checkpoint's state that cannot be resumed, as "its <part> <problem>", or None."""
    for key in ("epoch", "next_batch"):
        if type(payload.get(key)) is not int or payload[key] < 0:
            return f"its {key} is {reprlib.repr(payload.get(key))}, not a count"
    if not _finite(payload.get("best_top1")):
        return f"its best_top1 is {reprlib.repr(payload.get('best_top1'))}, not a number"
    partial = payload.get("partial", {})
    if not (isinstance(partial, dict) and set(partial) <= set(_SUMS) and all(map(_finite, partial.values()))):
        return f"its partial-epoch sums are {reprlib.repr(partial)}, not a dict of {', '.join(_SUMS)} numbers"
    parts = (
        ("optimizer state", optimizer_problem(optimizer, payload.get("optimizer"))),
        ("gradient-scaler state", scaler_problem(payload.get("scaler"))),
        ("RNG state", rng_problem(payload.get("rng"))),
    )
    return next((f"its {part} {problem}" for part, problem in parts if problem), None)


def optimizer_problem(optimizer: torch.optim.Optimizer, state: object) -> str | None:
    """What keeps ``optimizer`` (this run's AdamW) from loading ``state`` exactly, or None."""
    parts = (state.get("state"), state.get("param_groups")) if isinstance(state, dict) else None
    if not (parts and isinstance(parts[0], dict) and isinstance(parts[1], list)):
        return f"is {_kind(state)}, not an optimizer state dict (with 'state' and 'param_groups')"
    ours, saved = optimizer.param_groups, state["param_groups"]
    if len(saved) != len(ours):
        return f"has {len(saved)} parameter groups, this run's optimizer {len(ours)}"
    params: dict[object, tuple[torch.Tensor, bool]] = {}
    for index, (mine, theirs) in enumerate(zip(ours, saved, strict=True)):
        if problem := _group_problem(mine, theirs):
            return f"has a parameter group {index} ({mine.get('name', 'unnamed')}) {problem}"
        amsgrad = bool(mine.get("amsgrad"))
        params.update((key, (param, amsgrad)) for key, param in zip(theirs["params"], mine["params"], strict=True))
    if len(params) != sum(len(group["params"]) for group in ours):
        return "lists a parameter id in more than one group"
    for key, entry in state["state"].items():
        if key not in params:
            return f"holds state for parameter id {reprlib.repr(key)}, which no group lists"
        if problem := _adamw_problem(entry, *params[key]):
            return f"for parameter {key} {problem}"
    return None


def scaler_problem(state: object) -> str | None:
    """What is wrong with a stored ``GradScaler.state_dict()`` (empty when the scaler was off), or None."""
    if state == {}:
        return None
    if not (isinstance(state, dict) and set(state) == {*_SCALER_FLOATS, *_SCALER_INTS}):
        return f"is {_kind(state)}, not a GradScaler state dict"
    floats_ok = all(_finite(state[key]) and state[key] > 0 for key in _SCALER_FLOATS)
    ints_ok = all(type(state[key]) is int and state[key] >= 0 for key in _SCALER_INTS)
    return None if floats_ok and ints_ok else f"has values out of range: {reprlib.repr(state)}"


def _group_problem(mine: dict[str, Any], theirs: object) -> str | None:
    ids = theirs.get("params") if isinstance(theirs, dict) else None
    if not (isinstance(ids, list) and all(type(key) is int for key in ids)):
        return f"that is {_kind(theirs)}, not a dict with a list of parameter ids"
    if len(theirs["params"]) != len(mine["params"]):
        return f"of {len(theirs['params'])} parameters, the model's has {len(mine['params'])}"
    for key, value in mine.items():
        if key != "params" and key in theirs and not _same_kind(theirs[key], value):
            return f"with {key}={reprlib.repr(theirs[key])}, where this run has {value!r}"
    return None


def _adamw_problem(entry: object, param: torch.Tensor, amsgrad: bool) -> str | None:
    moments = ("exp_avg", "exp_avg_sq", *(("max_exp_avg_sq",) if amsgrad else ()))
    if not (isinstance(entry, dict) and set(entry) == {"step", *moments}):
        return f"has {_kind(entry)}, not the entries step, {', '.join(moments)}"
    step = entry["step"]
    if not (isinstance(step, torch.Tensor) and step.numel() == 1 and _finite(step.item()) and step.item() >= 0):
        return f"has a step that is {_kind(step)}, not one count"
    for name in moments:
        value = entry[name]
        if not (isinstance(value, torch.Tensor) and value.is_floating_point() and value.shape == param.shape):
            return f"has an {name} that is {_kind(value)}, for a parameter of shape {tuple(param.shape)}"
        if not bool(torch.isfinite(value).all()):
            return f"has NaN or infinite values in {name}"
        if name != "exp_avg" and bool((value < 0).any()):
            return f"has negative values in {name}"
    return None


def _same_kind(saved: object, ours: object) -> bool:
    """``saved`` (a hyperparameter read from the file) is of the type this run's optimizer uses there."""
    if isinstance(ours, tuple):
        return isinstance(saved, (tuple, list)) and len(saved) == len(ours) and all(map(_same_kind, saved, ours))
    if _finite(ours):
        return _finite(saved)
    if isinstance(ours, str):
        return saved == ours  # the group's name: the groups are in this run's order
    return type(saved) is type(ours)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
