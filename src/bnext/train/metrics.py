"""Per-epoch metrics: ``metrics.jsonl`` (one JSON object per epoch), ``curves.png``, optional TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class MetricsLog:
    """Appends epoch records to ``OUTPUT/metrics.jsonl`` and redraws ``OUTPUT/curves.png``."""

    def __init__(self, output: Path, tensorboard: bool = False) -> None:
        self.path = output / "metrics.jsonl"
        self.plot_path = output / "curves.png"
        self.records: list[dict[str, Any]] = []
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as error:
                raise ImportError("tensorboard=true needs `pip install tensorboard`") from error
            self.writer = SummaryWriter(str(output / "tensorboard"))

    def resume(self, next_epoch: int) -> None:
        """Keep the records of epochs before ``next_epoch`` (drop any written after the checkpoint)."""
        if self.path.is_file():
            lines = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
            self.records = [r for r in lines if r["epoch"] < next_epoch]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in self.records))

    def log(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self.writer.add_scalar(key, value, record["epoch"])
            self.writer.flush()
        plot_curves(self.records, self.plot_path)


def plot_curves(records: list[dict[str, Any]], path: Path) -> None:
    """Loss, accuracy, temperature and learning-rate curves over epochs (as paper Fig. 8)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] + 1 for r in records]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    axes[0].plot(epochs, [r["train_loss"] for r in records], "o-", label="train loss")
    if any("val_loss" in r for r in records):
        axes[0].plot(epochs, [r.get("val_loss") for r in records], "s-", label="val loss")
    axes[0].set_title("loss")
    axes[1].plot(epochs, [r["train_top1"] for r in records], "o-", label="train top-1")
    axes[1].plot(epochs, [r.get("val_top1") for r in records], "s-", label="val top-1")
    axes[1].set_title("accuracy (%)")
    axes[2].semilogy(epochs, [r["temperature"] for r in records], "o-", color="tab:red", label="temperature")
    lr_axis = axes[2].twinx()
    lr_axis.plot(epochs, [r["lr"] for r in records], "--", color="tab:gray", label="lr")
    lr_axis.set_ylabel("learning rate")
    axes[2].set_title("temperature (log) and lr")
    for axis in axes:
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend(loc="best", fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
