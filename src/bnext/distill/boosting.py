"""Knowledge boosting: one strong teacher for the whole run plus a consecutive series of assistants."""

from __future__ import annotations

import math


def assistant_index(epoch: int, epochs: int, num_assistants: int) -> int | None:
    """Index of the active assistant at ``epoch``: ``floor(epoch / (epochs / n))``, capped at ``n - 1``.

    Each assistant holds an equal share of the epochs (the authors' schedule);
    None when there are no assistants.
    """
    if num_assistants <= 0:
        return None
    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    return min(math.floor(epoch / (epochs / num_assistants)), num_assistants - 1)
