"""Small configs for fast trainer tests."""

import copy

from bnext.config import DEFAULTS


def tiny_config(output, epochs=2, **train):
    config = copy.deepcopy(DEFAULTS)
    config["model"] = {"name": "bnext_tiny", "kwargs": {"width_multiplier": 0.25, "stem_stride": 2}}
    config["data"].update(dataset="synthetic", synthetic_size=96, synthetic_classes=4, num_workers=0)
    config["train"].update({"epochs": epochs, "batch_size": 16, "warmup_epochs": 1, "threads": 1, **train})
    config["output"] = str(output)
    return config
