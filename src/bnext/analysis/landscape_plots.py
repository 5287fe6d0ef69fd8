"""Pictures of saved loss landscapes: 2D contour, 3D surface, and a side-by-side panel on one colour scale."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def colour_limits(losses: Mapping[str, np.ndarray], upper_percentile: float = 95.0) -> tuple[float, float]:
    """(vmin, vmax) shared by several grids: the lowest loss and a high percentile (outliers saturate)."""
    values = np.concatenate([grid[np.isfinite(grid)].ravel() for grid in losses.values()])
    return float(values.min()), float(np.percentile(values, upper_percentile))


def _contour(ax, coordinates: np.ndarray, loss: np.ndarray, limits: tuple[float, float], title: str):
    levels = np.linspace(*limits, 25)
    a, b = np.meshgrid(coordinates, coordinates, indexing="ij")
    filled = ax.contourf(a, b, np.clip(loss, *limits), levels=levels, cmap="viridis")
    ax.contour(a, b, np.clip(loss, *limits), levels=levels[::3], colors="white", linewidths=0.4)
    ax.plot(0, 0, "r+", markersize=8)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("direction 1")
    ax.set_ylabel("direction 2")
    ax.set_aspect("equal")
    return filled


def plot_contour(coordinates: np.ndarray, loss: np.ndarray, path: Path, title: str) -> Path:
    """A filled 2D contour plot of one loss grid (the trained weights marked at the centre)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    filled = _contour(ax, coordinates, loss, colour_limits({"one": loss}), title)
    fig.colorbar(filled, ax=ax, label="loss")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_surface(coordinates: np.ndarray, loss: np.ndarray, path: Path, title: str) -> Path:
    """A 3D surface plot of one loss grid."""
    plt = _pyplot()
    fig = plt.figure(figsize=(5, 4))
    ax = fig.add_subplot(projection="3d")
    a, b = np.meshgrid(coordinates, coordinates, indexing="ij")
    ax.plot_surface(a, b, loss, cmap="viridis", linewidth=0, antialiased=True)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("direction 1")
    ax.set_ylabel("direction 2")
    ax.set_zlabel("loss")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_panel(
    coordinates: np.ndarray, losses: Mapping[str, np.ndarray], path: Path, captions: Mapping[str, str]
) -> Path:
    """Contours of several models side by side on one shared colour scale (paper Fig. 2 / 6 style)."""
    plt = _pyplot()
    count = len(losses)
    columns = min(4, count)
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.4 * rows), squeeze=False, layout="constrained")
    limits = colour_limits(losses)
    filled = None
    for ax, (name, loss) in zip(axes.flat, losses.items(), strict=False):
        filled = _contour(ax, coordinates, loss, limits, captions.get(name, name))
    for ax in list(axes.flat)[count:]:
        ax.axis("off")
    fig.colorbar(filled, ax=axes.ravel().tolist(), label="loss (shared scale)", fraction=0.02)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
