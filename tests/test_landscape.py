"""Loss landscapes: filter normalization, the centre point, a closed-form quadratic, resume, and the CLI."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnext import create_model
from bnext.analysis.landscape import (
    GridSpec,
    compute_landscape,
    filter_normalized_direction,
    load_grid,
    perturbed_weights,
    smoothness,
)
from bnext.cli import main
from bnext.errors import UserError
from bnext.nn.binary_conv import BinaryConv2d


def tiny_bnext():
    model = create_model("bnext_tiny", num_classes=4, width_multiplier=0.25, stem_stride=2)
    return model.eval()


def test_directions_have_the_weights_filter_norms():
    model = tiny_bnext()
    weights = perturbed_weights(model)
    assert any(isinstance(m, BinaryConv2d) and m.weight is w for m in model.modules() for w in weights)
    assert not any(w.dim() < 2 for w in weights)  # no BN, bias, PReLU, shift
    direction = filter_normalized_direction(weights, torch.Generator().manual_seed(3))
    for weight, d in zip(weights, direction, strict=True):
        assert d.shape == weight.shape
        torch.testing.assert_close(d.flatten(1).norm(dim=1), weight.detach().flatten(1).norm(dim=1))
    again = filter_normalized_direction(weights, torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(direction, again, strict=True))


def test_grid_centre_is_the_models_own_loss_and_weights_are_restored(tmp_path):
    model = tiny_bnext()
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 3, 32, 32, generator=generator), torch.randint(0, 4, (8,), generator=generator))]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        own = F.cross_entropy(model(batches[0][0]), batches[0][1]).item()
    grid = compute_landscape(model, batches, tmp_path / "g.npz", GridSpec(steps=3, span=0.5), progress=False)
    assert grid["loss"][1, 1] == pytest.approx(own, rel=1e-5)
    assert not np.isclose(grid["loss"][0, 0], own)  # the corners moved the weights
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def quadratic_problem():
    """A linear map with squared error: the loss along any plane is a closed-form quadratic."""
    generator = torch.Generator().manual_seed(1)
    model = nn.Linear(5, 3, bias=False).double()
    inputs = torch.randn(40, 5, generator=generator, dtype=torch.float64)
    targets = torch.randn(40, 3, generator=generator, dtype=torch.float64)
    return model, [(inputs, targets)]


def test_quadratic_model_matches_its_closed_form(tmp_path):
    model, batches = quadratic_problem()
    spec = GridSpec(steps=7, span=1.5, seed=4)
    grid = compute_landscape(model, batches, tmp_path / "q.npz", spec, loss_fn=F.mse_loss, progress=False)
    # closed form: L(a, b) = |r0 + a ru + b rv|^2 / n, expanded into its six coefficients
    generator = torch.Generator().manual_seed(spec.seed)
    u = filter_normalized_direction([model.weight], generator)[0].numpy()
    v = filter_normalized_direction([model.weight], generator)[0].numpy()
    x, y = (t.numpy() for t in batches[0])
    w0 = model.weight.detach().numpy()
    r0, ru, rv = x @ w0.T - y, x @ u.T, x @ v.T
    n = r0.size
    a, b = np.meshgrid(spec.coordinates(), spec.coordinates(), indexing="ij")
    closed = (
        (r0 * r0).sum()
        + 2 * a * (r0 * ru).sum()
        + 2 * b * (r0 * rv).sum()
        + a**2 * (ru * ru).sum()
        + 2 * a * b * (ru * rv).sum()
        + b**2 * (rv * rv).sum()
    ) / n
    np.testing.assert_allclose(grid["loss"], closed, rtol=1e-10)
    numbers = smoothness(grid["loss"], grid["coordinates"])
    assert numbers["nonconvex_share"] == 0.0  # a positive semi-definite quadratic is convex everywhere
    # the Laplacian of the quadratic is the constant 2 (|ru|^2 + |rv|^2) / n
    assert numbers["mean_abs_laplacian"] == pytest.approx(2 * ((ru * ru).sum() + (rv * rv).sum()) / n, rel=1e-6)


def test_smoothness_sees_a_saddle():
    c = np.linspace(-1, 1, 9)
    a, b = np.meshgrid(c, c, indexing="ij")
    assert smoothness(a**2 - b**2 + 1, c)["nonconvex_share"] == 1.0


class Interrupted(Exception):
    pass


def test_resume_skips_finished_points(tmp_path):
    model, batches = quadratic_problem()
    spec = GridSpec(steps=5, span=1.0)
    calls = {"n": 0}

    def dying_loss(outputs, targets):
        calls["n"] += 1
        if calls["n"] == 13:  # killed in the third row (rows of 5: two rows saved)
            raise Interrupted
        return F.mse_loss(outputs, targets)

    path = tmp_path / "r.npz"
    with pytest.raises(Interrupted):
        compute_landscape(model, batches, path, spec, loss_fn=dying_loss, progress=False)
    saved = load_grid(path)["loss"]
    assert np.isfinite(saved[:2]).all() and np.isnan(saved[2:]).all()

    def counting_loss(outputs, targets):
        calls["n"] += 1
        return F.mse_loss(outputs, targets)

    calls["n"] = 0
    resumed = compute_landscape(model, batches, path, spec, loss_fn=counting_loss, progress=False)
    assert calls["n"] == 15  # only the three unfinished rows
    fresh = compute_landscape(model, batches, tmp_path / "f.npz", spec, loss_fn=F.mse_loss, progress=False)
    np.testing.assert_array_equal(resumed["loss"], fresh["loss"])


def test_a_grid_file_of_another_setup_is_refused(tmp_path):
    model, batches = quadratic_problem()
    path = tmp_path / "g.npz"
    compute_landscape(model, batches, path, GridSpec(steps=3), loss_fn=F.mse_loss, progress=False)
    with pytest.raises(UserError, match="another model, grid or data"):
        compute_landscape(model, batches, path, GridSpec(steps=5), loss_fn=F.mse_loss, progress=False)
    path.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a readable landscape file"):
        load_grid(path)


def test_cli_draws_plots_panel_and_numbers(tmp_path, capsys):
    runs = []
    for name, model in (("a", "bnext_tiny"), ("b", "bnext18")):
        out = tmp_path / name
        argv = ["train", "--model", model, "--dataset", "synthetic", "--epochs", "1", "--batch-size", "16"]
        argv += ["--set", "model.kwargs.width_multiplier=0.25", "--set", "model.kwargs.stem_stride=2"]
        argv += ["--set", "data.synthetic_size=32", "--set", "data.synthetic_classes=4", "--set", "train.threads=1"]
        assert main([*argv, "--output", str(out)]) == 0
        runs.append(str(out / "last.pt"))
    out = tmp_path / "landscape"
    argv = ["landscape", "--checkpoint", *runs, "--output", str(out), "--steps", "3", "--batches", "1"]
    assert main([*argv, "--batch-size", "8"]) == 0
    printed = capsys.readouterr().out
    assert "non-convex share" in printed
    report = json.loads((out / "smoothness.json").read_text())
    assert set(report) == {"a", "b"} and report["a"]["images"] == 8
    for name in ("a_contour.png", "a_surface.png", "b_contour.png", "panel.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert main(["landscape", "--checkpoint", *runs, "--output", str(out), "--replot", "--name", "x"]) == 2
    assert "2 checkpoints" in capsys.readouterr().err
