"""The paper's optimizer groups, learning-rate schedule and temperature schedule."""

import pytest
import torch

import bnext
from bnext.config import DEFAULTS
from bnext.nn.quantizers import EXACT_SIGN_BELOW
from bnext.train.schedule import (
    build_optimizer,
    lr_at_epoch,
    parameter_groups,
    temperature_at_epoch,
)


def recipe(**overrides):
    cfg = dict(DEFAULTS["train"], epochs=512)
    cfg.update(overrides)
    return cfg


def test_parameter_groups_follow_authors_code():
    model = bnext.create_model("bnext_tiny", num_classes=10, width_multiplier=0.25)
    other, conv = parameter_groups(model, 1e-8, 1e-3)
    assert other["weight_decay"] == 1e-3 and conv["weight_decay"] == 1e-8
    assert all(p.ndim == 4 for p in conv["params"]) and all(p.ndim != 4 for p in other["params"])
    conv_ids = {id(p) for p in conv["params"]}
    assert id(model.blocks[0].mixer.binary_conv.weight) in conv_ids
    assert id(model.stem.conv1.weight) in conv_ids
    assert id(model.fc.weight) not in conv_ids and id(model.stem.bn1.weight) not in conv_ids
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(conv["params"]) + len(other["params"]) == len(trainable)
    # Only parameters the forward never reads are frozen (the stem's PReLU, plain units' activation1).
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(name == "stem.prelu.weight" or name.endswith("activation1.weight") for name in frozen)
    optimizer = build_optimizer(model, recipe())
    assert optimizer.defaults["betas"] == (0.99, 0.999)


def test_lr_matches_timm_cosine_with_warmup_prefix():
    from timm.scheduler.cosine_lr import CosineLRScheduler

    cfg = recipe()
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg["lr"])
    scheduler = CosineLRScheduler(
        optimizer, t_initial=cfg["epochs"], warmup_t=5, lr_min=1e-7, warmup_lr_init=1e-5, warmup_prefix=True
    )
    for epoch in (0, 1, 4, 5, 6, 100, 256, 400, 511):
        scheduler.step(epoch)
        assert lr_at_epoch(epoch, cfg) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-9), epoch


def test_lr_values_at_chosen_epochs():
    cfg = recipe()
    assert lr_at_epoch(0, cfg) == pytest.approx(1e-5)
    assert lr_at_epoch(5, cfg) == pytest.approx(1e-3)
    assert lr_at_epoch(5 + 256, cfg) == pytest.approx(1e-7 + 0.5 * (1e-3 - 1e-7))


def test_temperature_schedule_paper_and_auto():
    cfg = recipe()
    assert temperature_at_epoch(0, cfg) == 1.0
    assert temperature_at_epoch(10, cfg) == pytest.approx(0.9**10)
    short = recipe(epochs=6, temperature_decay="auto")
    assert temperature_at_epoch(4, short) >= EXACT_SIGN_BELOW > temperature_at_epoch(5, short)
    with pytest.raises(ValueError, match="temperature_decay"):
        temperature_at_epoch(1, recipe(temperature_decay=1.5))


def test_lr_per_step_matches_timm_cosine_per_update():
    """``train.lr_per_step``: the fractional-epoch lr equals timm's scheduler stepped per update."""
    from timm.scheduler.cosine_lr import CosineLRScheduler

    cfg, steps = recipe(epochs=6, warmup_epochs=1), 50
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg["lr"])
    scheduler = CosineLRScheduler(
        optimizer,
        t_initial=cfg["epochs"] * steps,
        warmup_t=steps,
        lr_min=1e-7,
        warmup_lr_init=1e-5,
        warmup_prefix=True,
        t_in_epochs=False,
    )
    for update in (0, 7, 49, 50, 51, 173, 299, 349):
        scheduler.step_update(update)
        expected = optimizer.param_groups[0]["lr"]
        assert lr_at_epoch(update / steps, cfg) == pytest.approx(expected, rel=1e-9), update
