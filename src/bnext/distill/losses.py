"""Distillation losses: standard KD and the gap-sensitive teacher ensemble (paper Eq. 4)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, reduce: bool = True) -> torch.Tensor:
    """Cross-entropy of the student's log-softmax against the teacher's softmax (KL up to a constant).

    Per instance when ``reduce`` is False; the teacher side carries no gradient.
    """
    target = F.softmax(teacher_logits.detach().float(), dim=1)
    per_instance = -(target * F.log_softmax(student_logits.float(), dim=1)).sum(dim=1)
    return per_instance.mean() if reduce else per_instance


def gap_sensitive_weights(student_logits: torch.Tensor, teacher_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-instance teacher weights ``a = softmax_i(CE(student, teacher_i))`` (detached), shape (N, T).

    A teacher whose knowledge is further from the student's gets *more* weight on
    that instance, which is where there is most left to learn (paper Sec. 4.2).
    """
    with torch.no_grad():
        gaps = torch.stack([kd_loss(student_logits, t, reduce=False) for t in teacher_logits], dim=1)
        return torch.softmax(gaps, dim=1)


WEIGHTINGS = ("instance", "authors_code")


def gap_sensitive_kd_loss(
    student_logits: torch.Tensor, teacher_logits: Sequence[torch.Tensor], weighting: str = "instance"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ensemble KD over ``teacher_logits``; also returns the per-instance weights ``a`` (N, T).

    ``weighting="instance"`` is the paper's Eq. 4: ``mean_n(sum_i a_ni * KD_ni) / T``.
    ``weighting="authors_code"`` is what the authors' training script computes by
    default (``--hard_knowledge_grains Instance``): each teacher's KD term is first
    reduced to its batch mean, ``mean_n(sum_i a_ni * mean_m(KD_mi)) / T``, so the
    weights only rescale whole teachers by their mean weight over the batch.
    """
    if not teacher_logits:
        raise ValueError("gap_sensitive_kd_loss needs at least one teacher's logits")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
    weights = gap_sensitive_weights(student_logits, teacher_logits)
    terms = torch.stack([kd_loss(student_logits, t, reduce=False) for t in teacher_logits], dim=1)
    if weighting == "authors_code":
        terms = terms.mean(dim=0, keepdim=True)
    return (weights * terms).sum(dim=1).mean() / len(teacher_logits), weights
