"""Training: the paper's recipe in a resumable, distributed trainer."""

from bnext.train.evaluate import evaluate
from bnext.train.schedule import lr_at_epoch, parameter_groups, temperature_at_epoch
from bnext.train.trainer import Trainer

__all__ = ["Trainer", "evaluate", "lr_at_epoch", "parameter_groups", "temperature_at_epoch"]
