"""The ``bnext-runtime`` package on its own: built as a wheel, installed into a fresh venv without PyTorch, it
runs a ``.bnx`` that bnext exported to the logits of PyTorch eval."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from bnext.deploy import export_checkpoint
from bnext.loading import model_from_checkpoint

ROOT = Path(__file__).resolve().parents[1]
MAX_WHEEL_BYTES = 2 * 2**20


def run(*command: str, cwd: Path | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.slow
def test_the_wheel_runs_a_bnx_in_a_venv_without_torch(tmp_path, trained_checkpoint):
    wheels = tmp_path / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(ROOT / "runtime"))
    (wheel,) = wheels.glob("bnext_runtime-*.whl")
    assert wheel.stat().st_size <= MAX_WHEEL_BYTES, wheel.stat().st_size
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", str(venv))
    python = str(venv / "bin" / "python")
    numpy_pin = next(
        line for line in (ROOT / "requirements.lock").read_text().splitlines() if line.startswith("numpy==")
    )
    run(python, "-m", "pip", "install", "--quiet", str(wheel), numpy_pin)

    checkpoint = trained_checkpoint("bnext_tiny")
    path = export_checkpoint(checkpoint, tmp_path / "model.bnx").path
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    np.save(tmp_path / "images.npy", images.numpy())
    script = textwrap.dedent(
        f"""
        import importlib.util, sys
        import numpy as np
        import bnext_runtime
        assert importlib.util.find_spec("torch") is None, "torch is importable in the runtime's venv"
        model = bnext_runtime.load({str(path)!r})
        np.save({str(tmp_path / "logits.npy")!r}, model(np.load({str(tmp_path / "images.npy")!r})))
        print(model.kernel_path, model.card["model"])
        """
    )
    out = run(python, "-c", script, cwd=tmp_path)
    assert out.split()[1] == "bnext_tiny"
    model, _ = model_from_checkpoint(checkpoint)
    with torch.no_grad():
        expected = model.eval()(images)
    logits = torch.from_numpy(np.load(tmp_path / "logits.npy"))
    assert torch.equal(logits.argmax(1), expected.argmax(1))
    assert (logits - expected).abs().max() <= 1e-4 * expected.abs().max()
    np.save(tmp_path / "one.npy", images[0].numpy())  # bnext-run takes (C, H, W) arrays without Pillow
    top5 = run(str(venv / "bin" / "bnext-run"), str(path), str(tmp_path / "one.npy"), cwd=tmp_path)
    assert top5.startswith(str(tmp_path / "one.npy")) and top5.count(",") == 3  # the 4 classes, ranked
