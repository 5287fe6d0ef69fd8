"""The training loop: the paper's recipe, exact resume, DDP, AMP, progress, metrics and plots."""

from __future__ import annotations

import math
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

from bnext.card import ModelCard, card_from_payload, check_class_count
from bnext.checkpoint import FORMAT, CheckpointError, check_compatible, read_checkpoint, save_checkpoint
from bnext.data import DataBundle, build_data, describe_pipeline
from bnext.data.loader import InMemoryLoader
from bnext.distill import DistillationLoss, build_distillation
from bnext.errors import UserError
from bnext.hardware import choose_autocast
from bnext.models import check_model_kwargs, create_model
from bnext.nn import has_temperature, set_temperature
from bnext.nn.wrappers import unwrap_model
from bnext.train.distributed import DistInfo, all_reduce_sum, barrier, init_distributed, make_deterministic
from bnext.train.ema import WeightEMA
from bnext.train.evaluate import evaluate, recalibrate_batchnorm
from bnext.train.losses import ClassificationLoss
from bnext.train.metrics import MetricsLog, epoch_line
from bnext.train.resume_state import resume_problem
from bnext.train.rng import capture_rng, describe, restore_rng, seed_everything
from bnext.train.schedule import build_optimizer, lr_at_epoch, temperature_at_epoch


def compile_mode(cfg: dict[str, Any], device: torch.device, image_size: int) -> str | None:
    """The ``torch.compile`` mode for ``train.compile`` / ``compile_mode`` (None = eager).

    ``auto`` compiles on CUDA only; on small inputs (<= 64 px) the step is bound by
    kernel launches, so it uses ``reduce-overhead`` (CUDA graphs) there.
    """
    enabled = cfg["compile"]
    if enabled == "auto":
        enabled = device.type == "cuda"
    if not enabled:
        return None
    mode = cfg["compile_mode"]
    if mode == "auto":
        return "reduce-overhead" if device.type == "cuda" and image_size <= 64 else "default"
    return mode


class Trainer:
    """Trains ``config['model']`` on ``config['data']`` with ``config['train']``; see ``bnext.config.DEFAULTS``."""

    def __init__(self, config: dict[str, Any], info: DistInfo | None = None, criterion: Any = None) -> None:
        self.config = config
        self.cfg = config["train"]
        if self.cfg["deterministic"]:
            make_deterministic()
        kwargs = {k: v for k, v in config["model"]["kwargs"].items() if k != "num_classes"}
        check_model_kwargs(config["model"]["name"], kwargs)  # before the data: a typo fails at once
        self.info = info or init_distributed(self.cfg["device"])
        self.output = Path(config["output"])
        if self.cfg["threads"]:
            torch.set_num_threads(int(self.cfg["threads"]))
        seed_everything(self.cfg["seed"])
        # Denormal floats (tiny latent weights times tiny gradients) slow CPU kernels
        # by up to 10x late in an epoch; flushing them to zero changes nothing visible.
        torch.set_flush_denormal(True)
        self.data: DataBundle = build_data(config, self.info.rank, self.info.world, self.info.device)
        if self.info.is_main and self.data.pipeline != "memory":
            print(describe_pipeline(self.data.pipeline, self.info.device, config["data"]["num_workers"]), flush=True)
        self.model = self._build_model()
        self.optimizer = build_optimizer(self.model, self.cfg)
        self.amp_dtype = choose_autocast(self.cfg["amp"], self.cfg["amp_dtype"], self.info.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.compile_mode = compile_mode(self.cfg, self.info.device, self.data.image_size)
        self.criterion = criterion or self._build_criterion()
        self.teachers_tabulated = self._tabulate_teachers()
        self.ema = WeightEMA(self.model, self.cfg["ema_decay"]) if self.cfg["ema_decay"] > 0 else None
        self.train_model: nn.Module = self.model
        if self.info.enabled:
            device_ids = [self.info.local_rank] if self.info.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=device_ids)
        if self.compile_mode is not None:
            self.train_model = torch.compile(self.train_model, mode=self.compile_mode)
        self._compiled_first_step = self.compile_mode is None
        self.start_epoch = 0
        self.start_batch = 0
        self._stop_requested = False
        self.partial: dict[str, float] = {}
        self.best_top1 = 0.0
        self._epoch_seconds: list[float] = []
        self.metrics = MetricsLog(self.output, config["tensorboard"]) if self.info.is_main else None

    def _build_criterion(self) -> Any:
        distill = build_distillation(
            self.config, self.data.num_classes, self.data.mean, self.data.std, self.info.device, self.compile_mode
        )
        return distill or ClassificationLoss(self.config["data"], self.cfg, self.data.num_classes)

    def _tabulate_teachers(self) -> bool:
        """Run KD teachers once over the training set when its images never change (``distill.tabulate_teachers``)."""
        choice = self.config["distill"]["tabulate_teachers"]
        if choice not in ("auto", True, False):
            raise UserError(f"distill.tabulate_teachers must be auto, true or false, got {choice!r}")
        if choice is False or not isinstance(self.criterion, DistillationLoss):
            return False
        train = self.data.train
        if not (isinstance(train, InMemoryLoader) and train.deterministic_images):
            if choice is True:
                raise UserError(
                    "distill.tabulate_teachers=true needs training images that are the same every epoch "
                    "(an in-memory dataset with data.augment=none): set it to auto or false"
                )
            return False
        started = time.perf_counter()
        layout = torch.channels_last if self.cfg["channels_last"] else torch.contiguous_format
        count = self.criterion.tabulate_teachers(b.contiguous(memory_format=layout) for b in train.in_order(256))
        if self.info.is_main:
            print(
                f"teachers: logits of the {count} training images computed once in "
                f"{time.perf_counter() - started:.0f} s (distill.tabulate_teachers)",
                flush=True,
            )
        return True

    def _build_model(self) -> nn.Module:
        model_cfg = self.config["model"]
        kwargs = dict(model_cfg["kwargs"])
        requested = kwargs.pop("num_classes", None)
        if requested is not None:
            check_class_count(
                requested,
                self.data.num_classes,
                f"dataset {self.config['data']['dataset']!r} (model.kwargs.num_classes={requested})",
                "remove num_classes from the recipe or use the matching dataset",
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
            "criterion": getattr(self.criterion, "state_dict", dict)(),
        }
        if self.ema is not None:
            extra["ema"] = self.ema.model.state_dict()
        return save_checkpoint(self.model, self.output / name, card=self.card(), **extra)

    def card(self) -> ModelCard:
        """The model card of this run: model, classes and the input the model was trained on."""
        data = self.data
        kwargs = {k: v for k, v in self.config["model"]["kwargs"].items() if k != "num_classes"}
        return ModelCard(
            self.config["model"]["name"], data.num_classes, kwargs, list(data.classes), tuple(data.mean),
            tuple(data.std), data.image_size, self.config["data"]["dataset"],
        )  # fmt: skip

    def resume(self, path: str | Path) -> None:
        """Continue exactly where the checkpoint at ``path`` stopped (mid-epoch too)."""
        payload = read_checkpoint(path)
        if payload.get("kind") != "train" or payload.get("format") != FORMAT:
            raise CheckpointError(
                f"{path} is not a bnext training checkpoint (no optimizer / epoch state): "
                "start a new run, or load it as weights with create_model(..., checkpoint=...)"
            )
        trained_as = card_from_payload(payload)
        if trained_as is None or trained_as.model != self.config["model"]["name"]:
            raise CheckpointError(
                f"{path} was trained as {trained_as.model if trained_as else None!r}, the config asks for "
                f"{self.config['model']['name']!r}: use the same model to resume"
            )
        check_compatible(self.model, payload["model"], str(path))
        problem = resume_problem(payload, self.optimizer)
        ema = payload.get("ema") if self.ema is not None else None
        if ema is not None and not (isinstance(ema, dict) and all(isinstance(v, torch.Tensor) for v in ema.values())):
            problem = f"its EMA weights are {describe(ema)}, not a dict of tensors"
        if problem:
            raise CheckpointError(
                f"{path} cannot be resumed: {problem}. The file is damaged or was not written by bnext train: "
                "resume from another checkpoint of the run (e.g. best.pt), or start afresh without --resume"
            )
        if ema is not None:
            check_compatible(self.ema.model, ema, f"{path} (its EMA weights)")
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        if payload["scaler"]:  # empty when it was saved with the scaler off (no fp16): keep a fresh one
            self.scaler.load_state_dict(payload["scaler"])
        if ema is not None:
            self.ema.model.load_state_dict(ema)
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
        self._set_lr(lr)
        temperature = temperature_at_epoch(epoch, cfg)
        set_temperature(self.model, temperature)
        started = time.perf_counter()
        # Evaluated and saved at the temperature it trained with (BatchNorm statistics
        # match it); the next epoch starts at the decayed one.
        train = self._train_epoch(epoch)
        record: dict[str, Any] = {"epoch": epoch, "lr": lr}
        if has_temperature(self.model):  # an fp model has no binarization temperature to log
            record["temperature"] = temperature
        record.update(train)
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
        record["seconds"] = time.perf_counter() - started
        self._epoch_seconds.append(record["seconds"])
        if self.info.is_main:
            self.save("last.pt", epoch + 1)
            if is_best:
                self.save("best.pt", epoch + 1)
            self.metrics.log(record)
            remaining = (cfg["epochs"] - epoch - 1) * sum(self._epoch_seconds) / len(self._epoch_seconds)
            print(epoch_line(record, cfg["epochs"], remaining), flush=True)
        barrier(self.info)
        return record

    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        cfg, info = self.cfg, self.info
        start = self.start_batch if epoch == self.start_epoch else 0
        sums = {"loss": 0.0, "correct": 0.0, "seen": 0.0, "skipped": 0.0, "data_time": 0.0, "time": 0.0}
        if start:
            sums.update(self.partial)
        # Loss and hits add up on the device; the host reads them every ``log_every`` steps
        # (and at a checkpoint), so a GPU step never waits on ``.item()``.
        self._device_sums = torch.zeros(2, dtype=torch.float64, device=info.device)
        self.train_model.train()
        total = len(self.data.train)
        bar = tqdm(
            total=total,
            initial=start,
            desc=f"epoch {epoch + 1}/{cfg['epochs']}",
            leave=True,
            dynamic_ncols=True,
            disable=not (info.is_main and sys.stderr.isatty()),
        )
        order = self.data.train.epoch_order(epoch) if self.teachers_tabulated else None
        tick = time.perf_counter()
        for index, (images, labels, skipped) in enumerate(self.data.train.epoch(epoch, start), start=start):
            data_done = time.perf_counter()
            if cfg["temperature_per_step"]:
                set_temperature(self.model, temperature_at_epoch(epoch + index / total, cfg))
            if cfg["lr_per_step"]:
                self._set_lr(lr_at_epoch(epoch + index / total, cfg))
            sums["skipped"] += skipped
            if len(labels):
                ids = self.data.train.batch_ids(order, index) if order is not None else None
                self._step(images, labels, epoch, ids)
                sums["seen"] += len(labels)
            now = time.perf_counter()
            sums["data_time"] += data_done - tick
            sums["time"] += now - tick
            tick = now
            bar.update(1)
            if self._stop_requested:
                bar.close()
                self.partial = self._read_sums(sums, epoch)
                self._stop_here(epoch, index + 1)
            if (index + 1) % cfg["log_every"] == 0 or index + 1 == total:
                read = self._read_sums(sums, epoch)
                bar.set_postfix(
                    loss=f"{read['loss'] / max(read['seen'], 1):.3f}",
                    top1=f"{100 * read['correct'] / max(read['seen'], 1):.1f}",
                )
        bar.close()
        sums = self._read_sums(sums, epoch)
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

    def _read_sums(self, sums: dict[str, float], epoch: int) -> dict[str, float]:
        """The host-side sums with the device's loss / hit totals added (one sync); checks for NaN."""
        loss, correct = self._device_sums.tolist()
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"the training loss became {loss} in epoch {epoch + 1}: lower train.lr or "
                "turn off amp (train.amp=false)"
            )
        return {**sums, "loss": sums["loss"] + loss, "correct": sums["correct"] + correct}

    def _step(self, images: torch.Tensor, labels: torch.Tensor, epoch: int, ids: torch.Tensor | None = None) -> None:
        device = self.info.device
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        if self.cfg["channels_last"]:
            images = images.contiguous(memory_format=torch.channels_last)
        inputs, targets = self.criterion.prepare(images, labels)
        started = time.perf_counter()
        context = torch.autocast(device.type, dtype=self.amp_dtype) if self.amp_dtype else nullcontext()
        with context:
            logits = self.train_model(inputs)
        lookup = {} if ids is None else {"sample_ids": ids}  # tabulated teachers: logits by sample index
        loss = self.criterion(logits.float(), targets, inputs, epoch, **lookup)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg["clip_grad"])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(unwrap_model(self.model))
        hits = (logits.detach().argmax(1) == labels).sum()
        self._device_sums += torch.stack([loss.detach().double() * len(labels), hits.double()])
        if not self._compiled_first_step:
            self._compiled_first_step = True
            if self.info.is_main:
                print(
                    f"torch.compile ({self.compile_mode}): first step compiled and ran in "
                    f"{time.perf_counter() - started:.0f} s",
                    flush=True,
                )
