"""Per-epoch metrics: ``metrics.jsonl`` (one JSON object per epoch), ``curves.png``, optional TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bnext.atomic import atomic_write
from bnext.errors import UserError


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
        """Keep the records of epochs before ``next_epoch`` (drop any written after the checkpoint), rewritten
        atomically. A run killed while appending leaves a cut last line: it is dropped (its epoch comes again)."""
        if self.path.is_file():
            self.records = [r for r in read_records(self.path) if r["epoch"] < next_epoch]
        self.path.parent.mkdir(parents=True, exist_ok=True)  # resuming into a new run folder
        text = "".join(json.dumps(r) + "\n" for r in self.records).encode()
        atomic_write(self.path, lambda handle: handle.write(text))

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


def read_records(path: Path) -> list[dict[str, Any]]:
    """The epoch records of a ``metrics.jsonl``; a cut last line (a killed append) is left out. Any other line
    that is not a JSON object with a whole ``epoch`` is a UserError naming the file, the line and the fix."""
    lines = [(number, line) for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)]
    lines = [(number, line) for number, line in lines if line.strip()]
    records = []
    for index, (number, line) in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if index == len(lines) - 1:  # the append a kill interrupted
                break
            record = None
        epoch = record.get("epoch") if isinstance(record, dict) else None
        if type(epoch) is not int or epoch < 0:
            raise UserError(
                f"{path}: line {number} is not an epoch record (a JSON object with a whole 'epoch'): the file is "
                "damaged; move it away to resume (the checkpoint is intact: a fresh metrics.jsonl is started)"
            )
        records.append(record)
    return records


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def epoch_line(record: dict[str, Any], epochs: int, remaining_seconds: float) -> str:
    """The one-line summary of an epoch that always goes to the log (tty or not)."""
    parts = [
        f"epoch {record['epoch'] + 1}/{epochs}",
        f"train loss {record['train_loss']:.4f}",
        f"top-1 {record['train_top1']:.2f}%",
    ]
    if "val_top1" in record:
        parts.append(f"val top-1 {record['val_top1']:.2f}% top-5 {record['val_top5']:.2f}%")
    parts.append(f"{record['images_per_s']:,.0f} img/s")
    parts.append(f"data {100 * record['data_time_share']:.1f}%")
    parts.append(f"epoch {_duration(record['seconds'])}")
    parts.append(f"ETA {_duration(remaining_seconds)}")
    return "  ".join(parts)


def plot_curves(records: list[dict[str, Any]], path: Path) -> None:
    """Loss and accuracy over epochs, plus the temperature (binary models) and lr (as paper Fig. 8)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, MaxNLocator

    epochs = [r["epoch"] + 1 for r in records]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    axes[0].plot(epochs, [r["train_loss"] for r in records], "o-", label="train loss")
    if any("val_loss" in r for r in records):
        axes[0].plot(epochs, [r.get("val_loss") for r in records], "s-", label="val loss")
    axes[0].set_title("loss")
    axes[1].plot(epochs, [r["train_top1"] for r in records], "o-", label="train top-1")
    if any("val_top1" in r for r in records):
        axes[1].plot(epochs, [r.get("val_top1") for r in records], "s-", label="val top-1")
    axes[1].set_title("accuracy (%)")
    schedule = axes[2]
    lines = []
    if any("temperature" in r for r in records):  # fp models have none
        lines += schedule.semilogy(
            epochs, [r.get("temperature") for r in records], "o-", color="tab:red", label="temperature (log)"
        )
        schedule.yaxis.set_major_locator(LogLocator(base=10, numticks=6))
        schedule.set_ylabel("temperature")
        lr_axis = schedule.twinx()
        schedule.set_title("temperature and lr")
    else:
        lr_axis = schedule
        schedule.set_title("learning rate")
    lines += lr_axis.plot(epochs, [r["lr"] for r in records], "--", color="tab:gray", label="lr")
    lr_axis.set_ylabel("learning rate")
    lr_axis.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    for axis in axes:
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    axes[0].legend(loc="best", fontsize=8)
    axes[1].legend(loc="best", fontsize=8)
    schedule.legend(lines, [line.get_label() for line in lines], loc="best", fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
