"""The registry and every registered model."""

import pytest
import torch

import bnext
from bnext.errors import UserError
from bnext.nn import BinaryUnit

AUTHORS_PARAMS = {  # the authors' models at 1000 classes
    "bnext_tiny": 30_862_236,
    "bnext_small": 68_594_614,
    "bnext_middle": 134_501_974,
    "bnext_large": 326_546_640,
    "bnext18": 12_064_648,
}


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,expected", sorted(AUTHORS_PARAMS.items()))
def test_parameter_counts_equal_authors_models(name, expected):
    assert count(bnext.create_model(name, num_classes=1000)) == expected


def test_list_models_names_the_family_and_baselines():
    names = bnext.list_models()
    for name in [
        "bnext_tiny",
        "bnext_small",
        "bnext_middle",
        "bnext_large",
        "bnext18",
        "binarynet18",
        "birealnet18",
        "real2binary18",
        "reactnet_a",
    ]:
        assert name in names
    assert bnext.list_models("bnext_*") == ["bnext_large", "bnext_middle", "bnext_small", "bnext_tiny"]


def test_unknown_model_name_suggests_close_names():
    with pytest.raises(UserError, match="unknown model 'bnext_tinny'.*bnext_tiny"):
        bnext.create_model("bnext_tinny")


@pytest.mark.parametrize("name", bnext.list_models())
def test_forward_backward_at_32px(name):
    model = bnext.create_model(name, num_classes=10, stem_stride=1)
    x = torch.randn(2, 3, 32, 32)
    logits = model(x)
    assert logits.shape == (2, 10)
    logits.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert sum(g is not None for g in grads) > 0.9 * len(grads)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)


@pytest.mark.parametrize("name", bnext.list_models())
def test_forward_backward_at_224px(name):
    model = bnext.create_model(name, num_classes=1000)
    x = torch.randn(1, 3, 224, 224)
    model.train()
    logits = model(torch.cat([x, x.flip(3)]))  # BatchNorm needs >1 value per channel at 7x7
    assert logits.shape == (2, 1000)
    logits.sum().backward()
    assert model.fc.weight.grad is not None and torch.isfinite(model.fc.weight.grad).all()


def test_ablation_switches_remove_modules():
    full = bnext.create_model("bnext_tiny", num_classes=10)
    no_rcp = bnext.create_model("bnext_tiny", num_classes=10, recoupling=False)
    no_elm = bnext.create_model("bnext_tiny", num_classes=10, elm_attention=False)
    units = lambda m: [u for u in m.modules() if isinstance(u, BinaryUnit)]  # noqa: E731
    assert any(u.elm_attention for u in units(full)) and not any(u.elm_attention for u in units(no_elm))
    assert all(hasattr(u, "se") for u in units(full)) and not any(hasattr(u, "se") for u in units(no_rcp))
    assert count(no_rcp) < count(full)


def test_elm_attention_on_even_blocks_and_channel_doubling_by_concat():
    model = bnext.create_model("bnext_tiny", num_classes=10)
    assert [block.mixer.elm_attention for block in model.blocks[:4]] == [False, True, False, True]
    assert len(model.blocks[0].ffn) == 2 and len(model.blocks[2].ffn) == 1  # 32 -> 64 doubles by concat
    fp_convs = [name for name, m in model.blocks.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert fp_convs and all(".se.gate." in name for name in fp_convs)  # no fp 1x1 downsample conv


def test_width_multiplier_and_stem_stride():
    small = bnext.create_model("bnext_tiny", num_classes=10, width_multiplier=0.25, stem_stride=2)
    assert small.fc.in_features == 256
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="stem_stride"):
        bnext.create_model("bnext18", stem_stride=3)


@pytest.mark.parametrize("name,size", [("bnext_tiny", 28), ("bnext18", 40), ("reactnet_a", 36)])
def test_input_size_the_strides_cannot_take_is_a_clear_error(name, size):
    model = bnext.create_model(name, num_classes=10)
    with pytest.raises(UserError, match="divisible by"):
        model(torch.randn(1, 3, size, size))
