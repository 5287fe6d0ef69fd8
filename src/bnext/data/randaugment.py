"""timm's RandAugment as batched tensor ops: each image draws its own ops and magnitudes.

The op set, the magnitude sampling (N(m, mstd) clipped to [0, mmax]), the
per-op probability, the random sign of signed ops and the random bilinear /
bicubic choice of geometric ops follow ``timm.data.auto_augment`` (read from
timm 1.0). The ops reproduce PIL's integer arithmetic (``ImageOps`` /
``ImageEnhance``) on float tensors that hold uint8 values, so the same code runs
on CPU and GPU tensors. Every random draw comes from a CPU generator: which
images an op touches is known on the host, so nothing waits on the GPU.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bnext.errors import UserError

PLAIN_OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)
"""timm's ``_RAND_TRANSFORMS`` (``rand-...`` without ``inc1``)."""

INCREASING_OPS = tuple(
    f"{name}Increasing" if name in ("Posterize", "Solarize", "Color", "Contrast", "Brightness", "Sharpness") else name
    for name in PLAIN_OPS
)
"""timm's ``_RAND_INCREASING_TRANSFORMS`` (``inc1``)."""

GEOMETRIC_OPS = frozenset({"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"})
LEVEL_DENOM = 10.0
TRANSLATE_PCT = 0.45  # timm's default ``translate_pct``


@dataclass(frozen=True)
class RandAugmentSpec:
    """A parsed timm RandAugment string such as ``rand-m7-mstd0.5`` (``-n``, ``-p``, ``-mmax``, ``-inc`` too)."""

    magnitude: float = 10.0
    num_layers: int = 2
    magnitude_std: float = 0.0
    magnitude_max: float = LEVEL_DENOM
    prob: float = 0.5
    increasing: bool = False

    @classmethod
    def parse(cls, text: str) -> RandAugmentSpec:
        parts = text.strip().split("-")
        if parts[0] != "rand":
            raise UserError(f"randaugment {text!r} must start with 'rand-' (timm's syntax, e.g. rand-m7-mstd0.5)")
        fields: dict[str, float | int | bool] = {}
        for part in parts[1:]:
            match = re.fullmatch(r"(mstd|mmax|inc|m|n|p)(\d+\.?\d*)", part)
            if match is None:
                raise UserError(
                    f"randaugment section {part!r} of {text!r} is not supported by the batched pipeline "
                    "(it knows m, n, mstd, mmax, p, inc): drop it or use data.pipeline=cpu"
                )
            key, value = match.groups()
            if key == "mstd":
                fields["magnitude_std"] = math.inf if float(value) > 100 else float(value)
            elif key == "mmax":
                fields["magnitude_max"] = float(value)
            elif key == "inc":
                fields["increasing"] = bool(int(float(value)))
            elif key == "m":
                fields["magnitude"] = float(value)
            elif key == "n":
                fields["num_layers"] = int(float(value))
            else:
                fields["prob"] = float(value)
        return cls(**fields)  # type: ignore[arg-type]

    @property
    def ops(self) -> tuple[str, ...]:
        return INCREASING_OPS if self.increasing else PLAIN_OPS


@dataclass
class Draws:
    """One batch's random choices, each (layers, N) on the CPU."""

    op: torch.Tensor  # index into spec.ops
    applied: torch.Tensor  # bool: the op ran (probability spec.prob)
    magnitude: torch.Tensor  # clipped to [0, magnitude_max]
    negate: torch.Tensor  # bool: signed ops use -level
    bicubic: torch.Tensor  # bool: geometric ops resample bicubic (else bilinear)


def draw(spec: RandAugmentSpec, count: int, generator: torch.Generator) -> Draws:
    """Draw every image's ops and magnitudes the way timm does (ops with replacement, uniform)."""
    shape = (spec.num_layers, count)
    op = torch.randint(0, len(spec.ops), shape, generator=generator)
    applied = torch.rand(shape, generator=generator, dtype=torch.float64) < spec.prob
    if spec.magnitude_std == math.inf:
        magnitude = torch.rand(shape, generator=generator, dtype=torch.float64) * spec.magnitude
    else:
        noise = torch.randn(shape, generator=generator, dtype=torch.float64)
        magnitude = spec.magnitude + spec.magnitude_std * noise
    magnitude = magnitude.clamp(0.0, spec.magnitude_max)
    negate = torch.rand(shape, generator=generator, dtype=torch.float64) > 0.5
    bicubic = torch.rand(shape, generator=generator, dtype=torch.float64) < 0.5
    return Draws(op, applied, magnitude, negate, bicubic)


def op_argument(name: str, magnitude: torch.Tensor, negate: torch.Tensor) -> torch.Tensor:
    """timm's level-to-argument mapping, vectorized (float64, CPU)."""
    level = magnitude / LEVEL_DENOM
    sign = torch.where(negate, -1.0, 1.0).to(torch.float64)
    base = name.removesuffix("Increasing")
    increasing = name.endswith("Increasing")
    if name == "Rotate":
        return level * 30.0 * sign
    if name in ("ShearX", "ShearY"):
        return level * 0.3 * sign
    if name in ("TranslateXRel", "TranslateYRel"):
        return level * TRANSLATE_PCT * sign
    if base == "Posterize":
        bits = torch.floor(level * 4)
        return 4 - bits if increasing else bits
    if base == "Solarize":
        threshold = torch.clamp(torch.floor(level * 256), max=256)
        return 256 - threshold if increasing else threshold
    if name == "SolarizeAdd":
        return torch.clamp(torch.floor(level * 110), max=128)
    if base in ("Color", "Contrast", "Brightness", "Sharpness"):
        return torch.clamp(1.0 + sign * level * 0.9, min=0.1) if increasing else level * 1.8 + 0.1
    return torch.zeros_like(level)  # AutoContrast, Equalize, Invert take no argument


# --- the ops: x is (k, 3, H, W) float holding uint8 values; arg is (k,) float64 on x's device ---


def _column(arg: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return arg.to(like.device, like.dtype).view(-1, 1, 1, 1)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """PIL's RGB -> L: (19595 R + 38470 G + 7471 B + 2^15) >> 16, as (k, 1, H, W).

    Every partial sum stays below 2^24, so float32 holds it exactly.
    """
    weights = torch.tensor([19595.0, 38470.0, 7471.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return torch.floor(((x * weights).sum(1, keepdim=True) + 32768) / 65536)


def blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ``Image.blend(degenerate, x, factor)``: float32 interpolation, clipped, truncated to uint8."""
    mixed = degenerate + _column(factor, x) * (x - degenerate)
    return torch.floor(mixed.clamp(0, 255))


def smooth(x: torch.Tensor) -> torch.Tensor:
    """PIL's ``ImageFilter.SMOOTH`` (3x3 ones, centre 5, scale 13, rounded); border pixels stay as they are."""
    box = F.avg_pool2d(x, 3, stride=1, divisor_override=1)  # exact integer 3x3 sums
    inner = torch.floor((box + 4 * x[..., 1:-1, 1:-1]) / 13 + 0.5).clamp(0, 255)
    out = x.clone()
    out[..., 1:-1, 1:-1] = inner
    return out


def per_channel_lookup(x: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Map each image channel's values through its own (k * 3, 256) table."""
    k, c = x.shape[:2]
    return lut.gather(1, x.long().reshape(k * c, -1)).reshape(x.shape).to(x.dtype)


def auto_contrast(x: torch.Tensor) -> torch.Tensor:
    """PIL's ``ImageOps.autocontrast`` (cutoff 0) per image and channel: v -> int(v * 255/(hi-lo) - lo * ...)."""
    k, c = x.shape[:2]
    low = x.amin(dim=(2, 3)).reshape(k * c, 1).double()
    high = x.amax(dim=(2, 3)).reshape(k * c, 1).double()
    levels = torch.arange(256, device=x.device, dtype=torch.float64).expand(k * c, 256)
    scale = 255.0 / (high - low).clamp(min=1)
    lut = torch.where(high > low, torch.floor(levels * scale - low * scale).clamp(0, 255), levels)
    return per_channel_lookup(x, lut)


def equalize(x: torch.Tensor) -> torch.Tensor:
    """PIL's ``ImageOps.equalize`` per image and channel (histogram lookup table, PIL's integer steps)."""
    k, c = x.shape[:2]
    values = x.long().reshape(k * c, -1)
    offsets = torch.arange(k * c, device=x.device).view(-1, 1) * 256
    hist = torch.bincount((values + offsets).reshape(-1), minlength=k * c * 256).view(k * c, 256)
    bins = torch.arange(256, device=x.device)
    last_bin = torch.where(hist > 0, bins, -1).amax(1, keepdim=True)
    last_count = hist.gather(1, last_bin)
    step = (hist.sum(1, keepdim=True) - last_count) // 255
    used = (hist > 0).sum(1, keepdim=True)
    before = torch.cumsum(hist, 1) - hist  # pixels in lower bins
    lut = ((step // 2 + before) // step.clamp(min=1)).clamp(max=255)
    return per_channel_lookup(x, torch.where((used <= 1) | (step == 0), bins.expand_as(lut), lut))


def posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    quantum = _column(torch.pow(2.0, 8 - bits.clamp(max=8)), x)
    return torch.floor(x / quantum) * quantum


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= _column(threshold, x), 255 - x, x)


def solarize_add(x: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    return torch.where(x < 128, (x + _column(add, x)).clamp(max=255), x)


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    total = grayscale(x).sum(dim=(1, 2, 3), keepdim=True).double()  # integers below 2^24: exact in float32
    mean = torch.floor(total / x[0, 0].numel() + 0.5).to(x.dtype)
    return blend(mean.expand_as(x), x, factor)


def pil_affine(name: str, arg: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(k, 3, 3) float64: PIL's output -> input map of timm's geometric op, in pixel-centre coordinates."""
    k = len(arg)
    matrix = torch.eye(3, dtype=torch.float64).repeat(k, 1, 1)
    if name == "ShearX":
        matrix[:, 0, 1] = arg
    elif name == "ShearY":
        matrix[:, 1, 0] = arg
    elif name == "TranslateXRel":
        matrix[:, 0, 2] = arg * width
    elif name == "TranslateYRel":
        matrix[:, 1, 2] = arg * height
    else:  # Rotate: PIL's Image.rotate about (w/2, h/2), counter-clockwise degrees
        angle = -torch.deg2rad(arg)
        cos, sin = torch.cos(angle), torch.sin(angle)
        cx, cy = width / 2.0, height / 2.0
        matrix[:, 0, 0], matrix[:, 0, 1], matrix[:, 1, 0], matrix[:, 1, 1] = cos, sin, -sin, cos
        matrix[:, 0, 2] = -cos * cx - sin * cy + cx
        matrix[:, 1, 2] = sin * cx - cos * cy + cy
    return matrix


def warp(x: torch.Tensor, matrices: torch.Tensor, bicubic: bool, fill: torch.Tensor) -> torch.Tensor:
    """Resample each image through its (k, 3, 3) pixel-centre map; outside pixels take ``fill`` (timm's mean)."""
    _, _, height, width = x.shape
    to_unit = torch.tensor([[2.0 / width, 0, -1], [0, 2.0 / height, -1], [0, 0, 1]], dtype=torch.float64)
    theta = to_unit @ matrices @ torch.linalg.inv(to_unit)
    grid = F.affine_grid(theta[:, :2].to(x.device, x.dtype), list(x.shape), align_corners=False)
    shade = fill.to(x.device, x.dtype).view(1, -1, 1, 1)
    mode = "bicubic" if bicubic else "bilinear"
    out = F.grid_sample(x - shade, grid, mode=mode, padding_mode="zeros", align_corners=False) + shade
    return torch.floor(out).clamp(0, 255)


def color_op(name: str, x: torch.Tensor, arg: torch.Tensor) -> torch.Tensor:
    """One non-geometric op on a subset of images (``arg`` from ``op_argument``)."""
    base = name.removesuffix("Increasing")
    if base == "AutoContrast":
        return auto_contrast(x)
    if base == "Equalize":
        return equalize(x)
    if base == "Invert":
        return 255 - x
    if base == "Posterize":
        return posterize(x, arg)
    if base == "Solarize":
        return solarize(x, arg)
    if base == "SolarizeAdd":
        return solarize_add(x, arg)
    if base == "Color":
        return blend(grayscale(x).expand_as(x), x, arg)
    if base == "Contrast":
        return contrast(x, arg)
    if base == "Brightness":
        return blend(torch.zeros_like(x), x, arg)
    if base == "Sharpness":
        return blend(smooth(x), x, arg)
    raise ValueError(f"unknown RandAugment op {name!r}")


def rand_augment(
    images: torch.Tensor, spec: RandAugmentSpec, generator: torch.Generator, fill: torch.Tensor
) -> torch.Tensor:
    """RandAugment over a batch (N, 3, H, W) of uint8-valued floats; returns the same layout."""
    count, _, height, width = images.shape
    draws = draw(spec, count, generator)
    out = images.clone()
    for layer in range(spec.num_layers):
        geometric: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for index, name in enumerate(spec.ops):
            chosen = ((draws.op[layer] == index) & draws.applied[layer]).nonzero().view(-1)
            if not len(chosen):
                continue
            arg = op_argument(name, draws.magnitude[layer, chosen], draws.negate[layer, chosen])
            if name in GEOMETRIC_OPS:
                geometric.append((chosen, pil_affine(name, arg, height, width), draws.bicubic[layer, chosen]))
            else:
                rows = chosen.to(out.device, non_blocking=True)
                out[rows] = color_op(name, out[rows], arg.to(out.device, non_blocking=True))
        if geometric:
            chosen = torch.cat([g[0] for g in geometric])
            matrices = torch.cat([g[1] for g in geometric])
            bicubic = torch.cat([g[2] for g in geometric])
            for mode in (False, True):
                pick = (bicubic == mode).nonzero().view(-1)
                if len(pick):
                    rows = chosen[pick].to(out.device, non_blocking=True)
                    out[rows] = warp(out[rows], matrices[pick], mode, fill)
    return out
