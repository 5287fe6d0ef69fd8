"""The authors' released weights (``hpi-xnor/BNext``) renamed to bnext's module paths.

Their ``.pth.tar`` files hold a ``state_dict`` with DataParallel's ``module.`` prefix
(stripped by ``bnext.checkpoint.extract_state_dict``) and their module names
(``feature.N``, ``Attention``, ``FFN_3x3``, ``se.se``), mapped here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

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
