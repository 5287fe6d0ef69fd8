"""Small configs for fast trainer tests."""

import copy
import os
import signal

import torch

from bnext.config import DEFAULTS

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
"""Devices that device-dependent tests run on: the CPU always, CUDA when present."""


def tiny_config(output, epochs=2, device="cpu", **train):
    """A 96-image synthetic run of a quarter-width BNext-Tiny, pinned to ``device`` (CPU unless asked)."""
    config = copy.deepcopy(DEFAULTS)
    config["model"] = {"name": "bnext_tiny", "kwargs": {"width_multiplier": 0.25, "stem_stride": 2}}
    config["data"].update(dataset="synthetic", synthetic_size=96, synthetic_classes=4, num_workers=0)
    config["train"].update(
        {"epochs": epochs, "batch_size": 16, "warmup_epochs": 1, "threads": 1, "device": device, **train}
    )
    config["output"] = str(output)
    return config


class InterruptAt:
    """Wraps the criterion and sends this process SIGINT at a given call (a Ctrl-C mid-step)."""

    def __init__(self, inner, at_call):
        self.inner, self.at_call, self.calls = inner, at_call, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.at_call:
            os.kill(os.getpid(), signal.SIGINT)
        return self.inner(*args, **kwargs)
