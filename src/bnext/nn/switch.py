"""Switching a mode attribute of many modules for the duration of a block."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from torch import nn


@contextmanager
def switched(modules: Sequence[nn.Module], attribute: str, value: Any) -> Iterator[None]:
    """Set ``attribute`` of each module to ``value`` within the block; restore each one's own value after."""
    previous = [getattr(module, attribute) for module in modules]
    for module in modules:
        setattr(module, attribute, value)
    try:
        yield
    finally:
        for module, old in zip(modules, previous, strict=True):
            setattr(module, attribute, old)
