"""Knowledge distillation: Knowledge-Complexity teacher selection and Diversified Consecutive KD."""

from bnext.distill.boosting import assistant_index
from bnext.distill.complexity import KNOWN_TEACHERS, knowledge_complexity, rank_by_kc
from bnext.distill.criterion import DistillationLoss, build_distillation
from bnext.distill.losses import gap_sensitive_kd_loss, gap_sensitive_weights, kd_loss
from bnext.distill.teachers import Teacher, load_teacher

__all__ = [
    "KNOWN_TEACHERS",
    "DistillationLoss",
    "Teacher",
    "assistant_index",
    "build_distillation",
    "gap_sensitive_kd_loss",
    "gap_sensitive_weights",
    "kd_loss",
    "knowledge_complexity",
    "load_teacher",
    "rank_by_kc",
]
