"""The training loop: the paper's recipe, exact resume, DDP, AMP, progress, metrics and plots."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from bnext.checkpoint import CheckpointError, read_checkpoint, save_checkpoint, unwrap_model
from bnext.data import DataBundle, build_data
from bnext.errors import UserError
from bnext.models import create_model
from bnext.nn import set_temperature
from bnext.train.distributed import DistInfo, all_reduce_sum, barrier, init_distributed
from bnext.train.ema import WeightEMA
from bnext.train.evaluate import evaluate, recalibrate_batchnorm
from bnext.train.losses import ClassificationLoss
from bnext.train.metrics import MetricsLog
from bnext.train.rng import capture_rng, restore_rng, seed_everything
from bnext.train.schedule import build_optimizer, lr_at_epoch, temperature_at_epoch


def autocast_dtype(cfg: dict[str, Any], device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` (None when off): bf16 on CPU, fp16 on CUDA unless set."""
    if not cfg["amp"]:
        return None
    choice = cfg["amp_dtype"]
    if choice == "auto":
        return torch.float16 if device.type == "cuda" else torch.bfloat16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[choice]


class Trainer:
    """Trains ``config['model']`` on ``config['data']`` with ``config['train']``; see ``bnext.config.DEFAULTS``."""

    def __init__(self, config: dict[str, Any], info: DistInfo | None = None, criterion: Any = None) -> None:
        self.config = config
        self.cfg = config["train"]
        self.info = info or init_distributed()
        self.output = Path(config["output"])
        if self.cfg["threads"]:
            torch.set_num_threads(int(self.cfg["threads"]))
        seed_everything(self.cfg["seed"])
        # Denormal floats (tiny latent weights times tiny gradients) slow CPU kernels
        # by up to 10x late in an epoch; flushing them to zero changes nothing visible.
        torch.set_flush_denormal(True)
        self.data: DataBundle = build_data(config, self.info.rank, self.info.world)
        self.model = self._build_model()
        self.optimizer = build_optimizer(self.model, self.cfg)
        self.amp_dtype = autocast_dtype(self.cfg, self.info.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.criterion = criterion or self._build_criterion()
        self.ema = WeightEMA(self.model, self.cfg["ema_decay"]) if self.cfg["ema_decay"] > 0 else None
        self.train_model: nn.Module = self.model
        if self.info.enabled:
            device_ids = [self.info.local_rank] if self.info.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=device_ids)
        if self.cfg["compile"]:
            self.train_model = torch.compile(self.train_model)
        self.start_epoch = 0
        self.start_batch = 0
        self._stop_requested = False
        self.partial: dict[str, float] = {}
        self.best_top1 = 0.0
        self.metrics = MetricsLog(self.output, config["tensorboard"]) if self.info.is_main else None

    def _build_criterion(self) -> Any:
        from bnext.distill import build_distillation

        distill = build_distillation(
            self.config, self.data.num_classes, self.data.mean, self.data.std, self.info.device
        )
        return distill or ClassificationLoss(self.config["data"], self.cfg, self.data.num_classes)

    def _build_model(self) -> nn.Module:
        model_cfg = self.config["model"]
        kwargs = dict(model_cfg["kwargs"])
        requested = kwargs.pop("num_classes", None)
        if requested is not None and requested != self.data.num_classes:
            raise UserError(
                f"model.kwargs.num_classes={requested} but dataset {self.config['data']['dataset']!r} has "
                f"{self.data.num_classes} classes: remove num_classes from the recipe or use the matching dataset"
            )
        model = create_model(model_cfg["name"], num_classes=self.data.num_classes, **kwargs)
        model = model.to(self.info.device)
        if self.cfg["channels_last"]:
            model = model.to(memory_format=torch.channels_last)
        return model

    # ----------------------------------------------------------------- checkpoints
    def save(self, name: str, epoch: int, next_batch: int = 0) -> Path | None:
        """Write ``OUTPUT/name`` atomically: model, optimizer, scaler, EMA, epoch, RNG, config, progress."""
        if not self.info.is_main:
            return None
        extra = {
            "kind": "train",
            "epoch": epoch,
            "next_batch": next_batch,
            "partial": dict(self.partial),
            "best_top1": self.best_top1,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng(),
            "config": self.config,
            "num_classes": self.data.num_classes,
            "classes": self.data.classes,
            "criterion": getattr(self.criterion, "state_dict", dict)(),
        }
        if self.ema is not None:
            extra["ema"] = self.ema.model.state_dict()
        kwargs = {k: v for k, v in self.config["model"]["kwargs"].items() if k != "num_classes"}
        return save_checkpoint(
            self.model,
            self.output / name,
            model_name=self.config["model"]["name"],
            model_kwargs={"num_classes": self.data.num_classes, **kwargs},
            **extra,
        )

    def resume(self, path: str | Path) -> None:
        """Continue exactly where the checkpoint at ``path`` stopped (mid-epoch too)."""
        payload = read_checkpoint(path)
        if payload.get("kind") != "train":
            raise CheckpointError(
                f"{path} is not a bnext training checkpoint (no optimizer / epoch state): "
                "start a new run, or load it as weights with create_model(..., checkpoint=...)"
            )
        if payload["model_name"] != self.config["model"]["name"]:
            raise CheckpointError(
                f"{path} was trained as {payload['model_name']!r}, the config asks for "
                f"{self.config['model']['name']!r}: use the same model to resume"
            )
        from bnext.checkpoint import check_compatible

        check_compatible(self.model, payload["model"], str(path))
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scaler.load_state_dict(payload["scaler"])
        if self.ema is not None and "ema" in payload:
            self.ema.model.load_state_dict(payload["ema"])
        if hasattr(self.criterion, "load_state_dict"):
            self.criterion.load_state_dict(payload.get("criterion", {}))
        restore_rng(payload["rng"])
        self.best_top1 = payload["best_top1"]
        self.start_epoch = payload["epoch"]
        self.start_batch = payload["next_batch"]
        self.partial = dict(payload.get("partial", {}))
        if self.metrics is not None:
            self.metrics.resume(self.start_epoch)

    # ----------------------------------------------------------------- loop
    def fit(self) -> dict[str, Any]:
        """Run the remaining epochs; return the last epoch's record.

        Ctrl-C (SIGINT) finishes the current step, saves ``last.pt`` at that batch
        and raises KeyboardInterrupt; ``resume`` then continues exactly. A second
        Ctrl-C stops at once.
        """
        if self.info.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
            (self.output / "config.yaml").write_text(yaml.safe_dump(self.config, sort_keys=False))
        if self.metrics is not None and (self.start_epoch, self.start_batch) == (0, 0):
            self.metrics.resume(0)  # a fresh run into an old folder starts a fresh metrics.jsonl
        record: dict[str, Any] = {}
        with self._deferred_interrupt():
            for epoch in range(self.start_epoch, self.cfg["epochs"]):
                record = self._run_epoch(epoch)
        return record

    @contextmanager
    def _deferred_interrupt(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum: int, frame: Any) -> None:
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True

        previous = signal.signal(signal.SIGINT, request_stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _stop_here(self, epoch: int, next_batch: int) -> None:
        path = self.save("last.pt", epoch, next_batch)
        if path is not None:
            print(f"\ninterrupted: saved {path}; continue with --resume {path}", file=sys.stderr)
        raise KeyboardInterrupt

    def _run_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.cfg
        lr = lr_at_epoch(epoch, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        temperature = temperature_at_epoch(epoch, cfg)
        set_temperature(self.model, temperature)
        # Evaluated and saved at the temperature it trained with (BatchNorm statistics
        # match it); the next epoch starts at the decayed one.
        train = self._train_epoch(epoch)
        record = {"epoch": epoch, "lr": lr, "temperature": temperature, **train}
        record.update(self.criterion.epoch_info(epoch))
        if (epoch + 1) % cfg["eval_every"] == 0 or epoch + 1 == cfg["epochs"]:
            if cfg["bn_recalibration_batches"]:
                recalibrate_batchnorm(
                    self.model,
                    self.data.train,
                    epoch,
                    cfg["bn_recalibration_batches"],
                    self.info.device,
                    cfg["channels_last"],
                )
            val = evaluate(
                self.model, self.data.val, self.info, channels_last=cfg["channels_last"], autocast_dtype=self.amp_dtype
            )
            record.update(val_top1=val["top1"], val_top5=val["top5"], val_loss=val["loss"])
            if self.ema is not None:
                record["val_top1_ema"] = evaluate(self.ema.model, self.data.val, self.info)["top1"]
        is_best = record.get("val_top1", -1.0) > self.best_top1
        if is_best:
            self.best_top1 = record["val_top1"]
        self.partial = {}
        if self.info.is_main:
            self.save("last.pt", epoch + 1)
            if is_best:
                self.save("best.pt", epoch + 1)
            self.metrics.log(record)
        barrier(self.info)
        return record

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        cfg, info = self.cfg, self.info
        start = self.start_batch if epoch == self.start_epoch else 0
        sums = {"loss": 0.0, "correct": 0.0, "seen": 0.0, "skipped": 0.0, "data_time": 0.0, "time": 0.0}
        if start:
            sums.update(self.partial)
        self.train_model.train()
        total = len(self.data.train)
        bar = tqdm(
            total=total,
            initial=start,
            desc=f"epoch {epoch + 1}/{cfg['epochs']}",
            leave=False,
            disable=not (info.is_main and sys.stderr.isatty()),
        )
        tick = time.perf_counter()
        for index, (images, labels, skipped) in enumerate(self.data.train.epoch(epoch, start), start=start):
            data_done = time.perf_counter()
            if cfg["temperature_per_step"]:
                set_temperature(self.model, temperature_at_epoch(epoch + index / total, cfg))
            sums["skipped"] += skipped
            if len(labels):
                loss, correct = self._step(images, labels, epoch)
                sums["loss"] += loss * len(labels)
                sums["correct"] += correct
                sums["seen"] += len(labels)
            now = time.perf_counter()
            sums["data_time"] += data_done - tick
            sums["time"] += now - tick
            tick = now
            self.partial = dict(sums)
            bar.update(1)
            if self._stop_requested:
                bar.close()
                self._stop_here(epoch, index + 1)
            bar.set_postfix(
                loss=f"{sums['loss'] / max(sums['seen'], 1):.3f}",
                top1=f"{100 * sums['correct'] / max(sums['seen'], 1):.1f}",
            )
        bar.close()
        loss, correct, seen, skipped, wall = all_reduce_sum(
            [sums["loss"], sums["correct"], sums["seen"], sums["skipped"], sums["time"]], info
        )
        return {
            "train_loss": loss / max(seen, 1),
            "train_top1": 100.0 * correct / max(seen, 1),
            "images_per_s": seen / max(wall / info.world, 1e-9),
            "data_time_share": sums["data_time"] / max(sums["time"], 1e-9),
            "skipped_images": int(skipped),
        }

    def _step(self, images: torch.Tensor, labels: torch.Tensor, epoch: int) -> tuple[float, float]:
        device = self.info.device
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        if self.cfg["channels_last"]:
            images = images.contiguous(memory_format=torch.channels_last)
        inputs, targets = self.criterion.prepare(images, labels)
        context = torch.autocast(device.type, dtype=self.amp_dtype) if self.amp_dtype else nullcontext()
        with context:
            logits = self.train_model(inputs)
        loss = self.criterion(logits.float(), targets, inputs, epoch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch}: lower train.lr or turn off amp")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg["clip_grad"])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(unwrap_model(self.model))
        correct = (logits.argmax(1) == labels).sum().item()
        return loss.item(), float(correct)
