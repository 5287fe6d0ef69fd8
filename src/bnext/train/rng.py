"""Capture and restore every random-number generator a run touches (for exact resume)."""

from __future__ import annotations

import random
import reprlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

_MT_WORDS = 624  # the 32-bit words of a Mersenne Twister state (numpy's MT19937 and Python's random)
_SET_ERRORS = (TypeError, ValueError, RuntimeError, IndexError, OverflowError)


def capture_rng() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Apply a ``capture_rng`` state (check it first with ``rng_problem``); GPUs beyond this machine's are skipped."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(_numpy_tuple(state["numpy"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        for device, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, device)


def rng_problem(state: object) -> str | None:
    """What keeps ``restore_rng`` from applying ``state`` (read from a file), or None when it is sound.

    Each part is tried on a throwaway generator, so a bad one is named before any global generator changes.
    """
    if not isinstance(state, dict) or not {"torch", "numpy", "python"} <= state.keys():
        return f"is {describe(state)}, not a dict of 'torch', 'numpy' and 'python' states"
    checks: dict[str, Callable[[Any], str | None]] = {
        "torch": _torch_problem,
        "numpy": _numpy_problem,
        "python": _python_problem,
        "cuda": _cuda_problem,
    }
    for name, check in checks.items():
        if name in state and (problem := check(state[name])):
            return f"for {name} {problem}"
    return None


def describe(value: object) -> str:
    """A short description of a value read from a file: a tensor's shape and dtype, else its type and repr."""
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {str(value.dtype).removeprefix('torch.')}"
    kind = type(value).__name__
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} {reprlib.repr(value)}"


def _tried(apply: Callable[[], object]) -> str | None:
    try:
        apply()
    except _SET_ERRORS as error:
        return f"is refused ({str(error).splitlines()[0] if str(error) else type(error).__name__})"
    return None


def _bytes_problem(value: object) -> str | None:
    if isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.dim() == 1:
        return None
    return f"is {describe(value)}, not a 1-D uint8 tensor"


def _torch_problem(value: object) -> str | None:
    return _bytes_problem(value) or _tried(lambda: torch.Generator().set_state(value))


def _cuda_problem(value: object) -> str | None:
    if not isinstance(value, (list, tuple)):
        return f"is {describe(value)}, not a list of generator states"
    devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for index, item in enumerate(value):  # a GPU this machine lacks is not restored: only its type is checked
        problem = _bytes_problem(item)
        if not problem and index < devices:
            problem = _tried(lambda item=item, index=index: torch.Generator(device=f"cuda:{index}").set_state(item))
        if problem:
            return f"device {index} {problem}"
    return None


def _numpy_tuple(value: dict[str, Any]) -> tuple[str, np.ndarray, int, int, float]:
    keys = value["keys"].numpy().astype(np.uint32)
    return value["name"], keys, value["pos"], value["has_gauss"], value["cached"]


def _numpy_problem(value: object) -> str | None:
    if not isinstance(value, dict):
        return f"is {describe(value)}, not a dict"
    keys, pos, has_gauss, cached = (value.get(key) for key in ("keys", "pos", "has_gauss", "cached"))
    integer = isinstance(keys, torch.Tensor) and keys.dtype in (torch.int64, torch.int32)
    if not (integer and tuple(keys.shape) == (_MT_WORDS,)):
        return f"has keys that are {describe(keys)}, not {_MT_WORDS} integers"
    if int(keys.min()) < 0 or int(keys.max()) >= 2**32:
        return "has keys outside 0..2**32-1"
    name = value.get("name")
    if type(name) is not str or name != "MT19937" or type(pos) is not int or not 0 <= pos <= _MT_WORDS:
        return f"has name={reprlib.repr(name)}, pos={reprlib.repr(pos)}, not 'MT19937' and 0..{_MT_WORDS}"
    if type(has_gauss) is not int or has_gauss not in (0, 1) or type(cached) is not float:
        return f"has has_gauss={reprlib.repr(has_gauss)}, cached={reprlib.repr(cached)}, not 0 or 1 and a float"
    return _tried(lambda: np.random.RandomState().set_state(_numpy_tuple(value)))


def _python_problem(value: object) -> str | None:
    if not (isinstance(value, (tuple, list)) and len(value) == 3):
        return f"is {describe(value)}, not random.getstate()'s (version, state, gauss)"
    version, internal, gauss = value
    words = isinstance(internal, (tuple, list)) and len(internal) == _MT_WORDS + 1
    if type(version) is not int or version != 3 or not words or not (gauss is None or type(gauss) is float):
        return f"is not random.getstate()'s (3, {_MT_WORDS + 1} integers, None or a float)"
    return _tried(lambda: random.Random().setstate((version, tuple(internal), gauss)))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
