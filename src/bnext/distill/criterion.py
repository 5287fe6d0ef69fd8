"""The training criterion for Diversified Consecutive KD, pluggable into ``bnext.train.Trainer``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F

from bnext.card import check_class_count
from bnext.distill.boosting import assistant_index
from bnext.distill.complexity import KNOWN_TEACHERS, knowledge_complexity
from bnext.distill.losses import WEIGHTINGS, gap_sensitive_kd_loss, kd_loss
from bnext.distill.teachers import Teacher, load_teacher
from bnext.errors import UserError

MODES = ("none", "kd", "gap_sensitive")


def teacher_kc(teacher: Teacher) -> float | None:
    """KC of a teacher from its parameter count and known (or recorded) accuracy."""
    accuracy = teacher.accuracy
    if accuracy is None and teacher.name in KNOWN_TEACHERS:
        accuracy = KNOWN_TEACHERS[teacher.name].accuracy
    return knowledge_complexity(teacher.params, accuracy) if accuracy else None


class DistillationLoss:
    """KD from a strong teacher, optionally ensembled (gap-sensitive) with the active assistant.

    ``mode="kd"``: standard KD from ``strong`` alone. ``mode="gap_sensitive"``:
    the strong teacher and the assistant of the current epoch (assistants in
    increasing KC order, equal shares of the epochs) are weighted per instance
    by Eq. 4. The student's loss is the KD term only, as in the authors' code, unless
    ``hard_label_weight`` (alpha) mixes in cross-entropy on the labels:
    ``(1 - alpha) * KD + alpha * CE`` (Hinton et al.'s form; for short budgets).
    """

    def __init__(
        self,
        mode: str,
        strong: Teacher,
        assistants: list[Teacher],
        epochs: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        num_classes: int,
        teacher_amp: bool = True,
        weighting: str = "instance",
        hard_label_weight: float = 0.0,
    ) -> None:
        if mode not in ("kd", "gap_sensitive"):
            raise UserError(f"distill.mode must be one of {', '.join(MODES)}, got {mode!r}")
        if weighting not in WEIGHTINGS:
            raise UserError(f"distill.weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
        if mode == "kd" and assistants:
            raise UserError("distill.mode=kd uses the strong teacher only: use gap_sensitive for assistants")
        kcs = [teacher_kc(t) for t in assistants]
        if all(kc is not None for kc in kcs):
            assistants = [t for _, t in sorted(zip(kcs, assistants, strict=True), key=lambda pair: pair[0])]
        self.mode, self.strong, self.assistants = mode, strong, assistants
        self.epochs, self.mean, self.std, self.amp = epochs, tuple(mean), tuple(std), teacher_amp
        if not 0.0 <= hard_label_weight <= 1.0:
            raise UserError(f"distill.hard_label_weight must be in [0, 1], got {hard_label_weight}")
        self.num_classes, self.weighting, self.hard_label_weight = num_classes, weighting, hard_label_weight
        self._strong_weight_sum: torch.Tensor | float = 0.0  # on the device: no host sync per step
        self._batches = 0
        self._checked = False
        self._tables: dict[int, torch.Tensor] = {}  # id(teacher) -> its logits of every training sample

    def tabulate_teachers(self, batches: Iterable[torch.Tensor]) -> int:
        """Compute every teacher's logits once for all training samples, given in index order.

        For data whose images do not change between epochs (no random augmentation),
        each step then looks its teachers' logits up by sample index instead of running
        the teachers: the same numbers, once instead of once per epoch. Returns the sample count.
        """
        teachers = [self.strong, *self.assistants]
        outputs: list[list[torch.Tensor]] = [[] for _ in teachers]
        for batch in batches:
            for teacher, chunks in zip(teachers, outputs, strict=True):
                chunks.append(teacher.logits(batch, self.mean, self.std, self.amp))
        for teacher, chunks in zip(teachers, outputs, strict=True):
            self._check_classes(teacher, chunks[0])
            self._tables[id(teacher)] = torch.cat(chunks)
        self._checked = True
        return len(self._tables[id(self.strong)])

    def prepare(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return images, labels

    def active_teachers(self, epoch: int) -> list[Teacher]:
        index = assistant_index(epoch, self.epochs, len(self.assistants))
        return ([self.assistants[index]] if index is not None else []) + [self.strong]

    def _check_classes(self, teacher: Teacher, logits: torch.Tensor) -> None:
        check_class_count(
            self.num_classes,
            logits.shape[1],
            f"teacher {teacher.name!r} (the student predicts {self.num_classes})",
            "use a teacher trained on this dataset (e.g. `bnext train --model resnet18_fp ...`, then "
            "distill.strong=PATH/best.pt)",
        )

    def __call__(
        self,
        logits: torch.Tensor,
        targets: torch.Tensor,
        images: torch.Tensor,
        epoch: int,
        sample_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The KD loss of a batch; ``sample_ids`` (training-set indices) look tabulated teachers up."""
        teachers = self.active_teachers(epoch) if self.mode == "gap_sensitive" else [self.strong]
        teacher_logits = []
        for teacher in teachers:
            if self._tables and sample_ids is not None:
                table = self._tables[id(teacher)]
                out = table[sample_ids.to(table.device)]
            else:
                out = teacher.logits(images, self.mean, self.std, self.amp)
            if not self._checked:
                self._check_classes(teacher, out)
            teacher_logits.append(out)
        self._checked = True
        if len(teacher_logits) == 1:
            loss, strong_weight = kd_loss(logits, teacher_logits[0]), 1.0
        else:
            loss, weights = gap_sensitive_kd_loss(logits, teacher_logits, self.weighting)
            strong_weight = weights[:, -1].mean()
        self._strong_weight_sum = self._strong_weight_sum + strong_weight
        self._batches += 1
        if self.hard_label_weight and targets is not None:
            loss = (1 - self.hard_label_weight) * loss + self.hard_label_weight * F.cross_entropy(logits, targets)
        return loss

    def epoch_info(self, epoch: int) -> dict[str, Any]:
        """Active assistant and mean per-instance weight of the strong teacher, for metrics.jsonl."""
        index = assistant_index(epoch, self.epochs, len(self.assistants)) if self.mode == "gap_sensitive" else None
        info = {
            "kd_mode": self.mode,
            "assistant": self.assistants[index].name if index is not None else None,
            "strong_weight": float(self._strong_weight_sum) / max(self._batches, 1),
        }
        self._strong_weight_sum, self._batches = 0.0, 0
        return info

    def state_dict(self) -> dict[str, Any]:
        return {"assistants": [t.name for t in self.assistants], "strong": self.strong.name, "mode": self.mode}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Refuse to resume with other teachers than the run started with."""
        if state and state != self.state_dict():
            raise UserError(f"the checkpoint was distilled with {state}, the config gives {self.state_dict()}")


def build_distillation(
    config: dict[str, Any], num_classes: int, mean, std, device: torch.device, compile_mode: str | None = None
):
    """The criterion ``config['distill']`` asks for, or None for plain cross-entropy.

    Teachers are compiled with ``compile_mode`` when the student is (None: eager).
    """
    cfg = config["distill"]
    if cfg["mode"] not in MODES:
        raise UserError(f"distill.mode must be one of {', '.join(MODES)}, got {cfg['mode']!r}")
    if cfg["mode"] == "none":
        return None
    if not cfg["strong"]:
        raise UserError(f"distill.mode={cfg['mode']} needs distill.strong (a teacher name or checkpoint path)")
    teachers = [load_teacher(spec).to(device) for spec in [cfg["strong"], *cfg["assistants"]]]
    if compile_mode is not None:
        teachers = [teacher.compile(compile_mode) for teacher in teachers]
    return DistillationLoss(
        cfg["mode"],
        teachers[0],
        teachers[1:],
        config["train"]["epochs"],
        mean,
        std,
        num_classes,
        cfg["teacher_amp"],
        cfg["weighting"],
        cfg["hard_label_weight"],
    )
