"""Shared test set-up: offline hubs, deterministic seeds, small thread counts."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# cuBLAS reads this once, at its first use in the process: set it before any CUDA test runs, so the
# deterministic-resume tests are exact whichever test touched the GPU first (no effect on CPU).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory):
    """``trained_checkpoint(model_name)``: a briefly trained, fully binarized checkpoint, built once per test run.

    Tests only read it (export, load, quantize into their own folders).
    """
    from bnext.train import Trainer
    from tests.helpers import tiny_config

    built = {}

    def get(model_name: str = "bnext_tiny"):
        if model_name not in built:
            folder = tmp_path_factory.mktemp(model_name)
            config = tiny_config(folder, epochs=2, temperature_decay="auto")
            config["model"]["name"] = model_name
            if model_name == "reactnet_a":  # fixed widths: no width_multiplier
                config["model"]["kwargs"].pop("width_multiplier")
            Trainer(config).fit()
            built[model_name] = folder / "last.pt"
        return built[model_name]

    return get
