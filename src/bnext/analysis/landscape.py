"""Loss landscapes (Li et al. 2018, "Visualizing the loss landscape of neural nets").

The loss is evaluated on a grid ``w + a * d1 + b * d2`` around the trained weights
``w``, with ``d1``, ``d2`` random Gaussian directions that are *filter-normalized*:
each filter (output channel / output row) of a direction is scaled to the norm of
the same filter of the weights, so the picture does not depend on the weights'
scale. Only conv and linear weights are perturbed; BatchNorm, biases, PReLU slopes,
learnable shifts and Info-RCP scales are left out (as Li et al. leave out BN and
biases). For binary convolutions the *latent* weights are perturbed: the forward
pass binarizes ``w + a d1 + b d2`` exactly as training did, so the landscape is
the one the optimizer saw. BatchNorm runs in eval mode with its stored statistics.

Results are written to an ``.npz`` file after every grid row (atomically), so an
interrupted run resumes where it stopped and plots can be redrawn without
recomputing (``bnext.analysis.landscape_plots``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from bnext.atomic import atomic_write
from bnext.errors import UserError
from bnext.nn.binary_conv import BinaryConv2d

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class GridSpec:
    """A square grid of ``steps`` x ``steps`` points over [-span, span]^2 with random directions of ``seed``."""

    steps: int = 21
    span: float = 1.0
    seed: int = 0

    def coordinates(self) -> np.ndarray:
        return np.linspace(-self.span, self.span, self.steps)


def perturbed_weights(model: nn.Module) -> list[nn.Parameter]:
    """The weights a landscape moves: conv and linear weights (binary convs: their latent weights)."""
    weights, seen = [], set()
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear, BinaryConv2d)) and id(module.weight) not in seen:
            seen.add(id(module.weight))
            weights.append(module.weight)
    if not weights:
        raise UserError("the model has no conv or linear weights to perturb")
    return weights


def filter_normalized_direction(weights: Sequence[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
    """A Gaussian direction per weight, each filter (slice along dim 0) rescaled to that filter's norm."""
    direction = []
    for weight in weights:
        noise = torch.randn(weight.shape, generator=generator, dtype=torch.float32).to(weight.device, weight.dtype)
        noise_norm = noise.flatten(1).norm(dim=1).clamp(min=1e-12)
        weight_norm = weight.detach().flatten(1).norm(dim=1)
        scale = (weight_norm / noise_norm).view(-1, *([1] * (weight.dim() - 1)))
        direction.append(noise * scale)
    return direction


def fixed_batches(loader: Any, count: int) -> list[Batch]:
    """The first ``count`` evaluation batches, held in memory so every grid point sees the same images."""
    batches = []
    for images, labels, _ in loader.epoch(0):
        if len(labels):
            batches.append((images, labels))
        if len(batches) == count:
            break
    if not batches:
        raise UserError("the evaluation set yielded no readable images")
    return batches


@torch.no_grad()
def mean_loss(model: nn.Module, batches: Sequence[Batch], loss_fn: LossFn = F.cross_entropy) -> tuple[float, float]:
    """(mean loss, top-1 % or NaN) of ``model`` in eval mode over ``batches``, weighted by batch size."""
    model.eval()
    device = next(model.parameters()).device
    loss_sum = correct = count = 0.0
    for inputs, targets in batches:
        inputs, targets = inputs.to(device), targets.to(device)
        outputs = model(inputs)
        loss_sum += loss_fn(outputs, targets).item() * len(targets)
        if outputs.dim() == 2 and targets.dim() == 1 and not targets.is_floating_point():
            correct += (outputs.argmax(1) == targets).sum().item()
        else:
            correct = float("nan")
        count += len(targets)
    return loss_sum / count, 100.0 * correct / count


def _save_npz(path: Path, **arrays: Any) -> None:
    """``np.savez`` atomically (an interruption never leaves a half-written grid)."""
    atomic_write(path, lambda handle: np.savez(handle, **arrays))


def load_grid(path: str | Path) -> dict[str, Any]:
    """A saved landscape: coordinates, loss and accuracy grids (NaN = not computed yet) and its metadata."""
    path = Path(path)
    try:
        with np.load(path) as data:
            grid = {key: data[key] for key in ("coordinates", "loss", "accuracy")}
            grid["meta"] = json.loads(str(data["meta"]))
    except (OSError, KeyError, ValueError) as error:
        raise UserError(f"{path} is not a readable landscape file ({error}); delete it to recompute") from error
    return grid


def compute_landscape(
    model: nn.Module,
    batches: Sequence[Batch],
    path: str | Path,
    spec: GridSpec = GridSpec(),
    *,
    loss_fn: LossFn = F.cross_entropy,
    meta: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fill (or finish) the loss grid of ``model`` at ``path``; the model's weights are restored afterwards.

    ``meta`` identifies the model and data (e.g. checkpoint path and checksum); a
    file at ``path`` made with another grid or other ``meta`` is refused instead of
    being mixed into this one.
    """
    path = Path(path)
    meta = {"grid": asdict(spec), "batches": len(batches), "images": sum(len(t) for _, t in batches), **(meta or {})}
    coordinates = spec.coordinates()
    if path.is_file():
        grid = load_grid(path)
        if grid["meta"] != json.loads(json.dumps(meta)):
            raise UserError(
                f"{path} holds a landscape of another model, grid or data ({grid['meta']} vs {meta}); "
                "use another output folder or delete the file"
            )
        loss, accuracy = grid["loss"], grid["accuracy"]
    else:
        loss = np.full((spec.steps, spec.steps), np.nan)
        accuracy = np.full_like(loss, np.nan)
    weights = perturbed_weights(model)
    generator = torch.Generator().manual_seed(spec.seed)
    d1 = filter_normalized_direction(weights, generator)
    d2 = filter_normalized_direction(weights, generator)
    original = [w.detach().clone() for w in weights]
    todo = int(np.isnan(loss).sum())
    bar = tqdm(total=todo, desc=f"landscape {path.stem}", disable=not progress or todo == 0)
    try:
        for i, a in enumerate(coordinates):
            if not np.isnan(loss[i]).any():
                continue
            for j, b in enumerate(coordinates):
                if not np.isnan(loss[i, j]):
                    continue
                with torch.no_grad():
                    for weight, w0, u, v in zip(weights, original, d1, d2, strict=True):
                        weight.copy_(w0 + float(a) * u + float(b) * v)
                loss[i, j], accuracy[i, j] = mean_loss(model, batches, loss_fn)
                bar.update()
            _save_npz(path, coordinates=coordinates, loss=loss, accuracy=accuracy, meta=json.dumps(meta))
    finally:
        bar.close()
        with torch.no_grad():
            for weight, w0 in zip(weights, original, strict=True):
                weight.copy_(w0)
    return {"coordinates": coordinates, "loss": loss, "accuracy": accuracy, "meta": meta}


def smoothness(loss: np.ndarray, coordinates: np.ndarray) -> dict[str, float]:
    """Numbers behind "smoother": how rugged and how sharp a loss grid is.

    * ``nonconvex_share`` (ruggedness): share of interior points whose finite-difference
      2x2 Hessian has a negative eigenvalue; 0 for a convex bowl however steep, high
      for a surface full of bumps and saddles.
    * ``mean_abs_laplacian`` (sharpness): mean |discrete Laplacian| over interior points
      per unit coordinate squared; 0 for a plane, large for a steep narrow basin.
    * ``relative_curvature``: that value divided by the centre loss.
    """
    h = float(coordinates[1] - coordinates[0])
    centre = loss[loss.shape[0] // 2, loss.shape[1] // 2]
    dxx = (loss[2:, 1:-1] - 2 * loss[1:-1, 1:-1] + loss[:-2, 1:-1]) / h**2
    dyy = (loss[1:-1, 2:] - 2 * loss[1:-1, 1:-1] + loss[1:-1, :-2]) / h**2
    dxy = (loss[2:, 2:] - loss[2:, :-2] - loss[:-2, 2:] + loss[:-2, :-2]) / (4 * h**2)
    laplacian = np.abs(dxx + dyy)
    # smallest eigenvalue of [[dxx, dxy], [dxy, dyy]]
    min_eigen = (dxx + dyy) / 2 - np.sqrt(((dxx - dyy) / 2) ** 2 + dxy**2)
    scale = max(np.abs(dxx).max(), np.abs(dyy).max(), 1e-12)
    return {
        "centre_loss": float(centre),
        "nonconvex_share": float((min_eigen < -1e-6 * scale).mean()),
        "mean_abs_laplacian": float(laplacian.mean()),
        "relative_curvature": float(laplacian.mean() / max(abs(centre), 1e-12)),
    }
