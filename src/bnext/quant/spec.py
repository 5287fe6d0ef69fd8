"""PTQ configurations in the paper's I-S-E-O notation (Table 7), e.g. ``8/8-4/8-4/8-8/8``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bnext.errors import UserError

PARTS = ("input", "squeeze", "expand", "output")
"""I: stem conv; S, E: the Info-RCP squeeze-and-expand convs; O: the classifier."""
FULL_PRECISION = 32
_PAIR = re.compile(r"^(\d+)/(\d+)$")


@dataclass(frozen=True)
class BitWidths:
    """Weight and activation bits of one part (32 = left in floating point)."""

    weight: int
    activation: int


def parse_quant_config(text: str) -> dict[str, BitWidths]:
    """``"8/8-4/8-4/8-8/8"`` -> bits per part; one ``W/A`` pair applies to all four parts."""
    pairs = text.strip().split("-")
    if len(pairs) == 1:
        pairs = pairs * 4
    if len(pairs) != 4:
        raise UserError(f"quant config {text!r} must be I-S-E-O, four W/A pairs such as 8/8-4/8-4/8-8/8")
    parsed = {}
    for part, pair in zip(PARTS, pairs, strict=True):
        match = _PAIR.match(pair.strip())
        if not match:
            raise UserError(f"quant config {text!r}: {part} part {pair!r} is not W/A bits such as 8/8")
        bits = BitWidths(int(match.group(1)), int(match.group(2)))
        for value in (bits.weight, bits.activation):
            if value != FULL_PRECISION and not 2 <= value <= 8:
                raise UserError(f"quant config {text!r}: {part} bits must be 2..8 or 32, got {value}")
        parsed[part] = bits
    return parsed
