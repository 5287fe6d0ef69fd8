"""Post-training quantization: quantizers, I-S-E-O configs, calibration, and cost accounting."""

import pytest
import torch

import bnext
from bnext.analysis import profile_model
from bnext.errors import UserError
from bnext.quant import (
    calibrate,
    fake_quantize,
    fake_quantize_weight,
    parse_quant_config,
    quantizable_parts,
    quantize_model,
)
from bnext.quant.layers import QuantizedMixin
from tests.helpers import DEVICES


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_activation_quantization_levels_and_error(bits):
    x = torch.randn(1000) * 3
    low, high = x.min(), x.max()
    q = fake_quantize(x, low, high, bits)
    assert len(torch.unique(q)) <= 2**bits
    step = (high - low) / (2**bits - 1)
    assert (q - x).abs().max() <= step / 2 + 1e-5


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_weight_quantization_per_channel(bits):
    weight = torch.randn(6, 5, 3, 3)
    restored = fake_quantize_weight(weight, bits)
    for channel in range(6):
        values = restored[channel]
        assert len(torch.unique(values)) <= 2**bits
        scale = weight[channel].abs().mean()
        normalized = weight[channel] / scale
        step = (normalized.max() - normalized.min()) / (2**bits - 1) * scale
        assert (values - weight[channel]).abs().max() <= step / 2 + 1e-5


def test_config_parsing_and_errors():
    bits = parse_quant_config("8/8-4/8-4/4-8/8")
    assert (bits["squeeze"].weight, bits["expand"].activation, bits["output"].weight) == (4, 4, 8)
    assert parse_quant_config("8/8")["input"].activation == 8
    for bad in ("8/8-4/8", "8-8-8-8", "8/8-1/8-8/8-8/8", "x/8-8/8-8/8-8/8", "8/8-4/8-4/8-8/9"):
        with pytest.raises(UserError, match="quant config"):
            parse_quant_config(bad)


def test_parts_of_bnext_are_stem_se_and_classifier():
    model = bnext.create_model("bnext_tiny", num_classes=10, width_multiplier=0.25)
    parts = quantizable_parts(model)
    assert parts["input"] == ["stem.conv1"] and parts["output"] == ["fc"]
    assert len(parts["squeeze"]) == len(parts["expand"]) == sum(1 for n in parts["squeeze"] if n.endswith("gate.1"))


@pytest.mark.parametrize("device", DEVICES)
def test_eight_bit_ptq_changes_logits_of_a_trained_model_little_and_leaves_binary_weights(tmp_path, device):
    from bnext.train import Trainer
    from tests.helpers import tiny_config

    trainer = Trainer(tiny_config(tmp_path, epochs=2, device=device))
    trainer.fit()
    model = trainer.model.eval()
    binary_before = {n: p.clone() for n, p in model.named_parameters() if "binary_conv" in n}
    images = torch.cat([x for x, _, _ in trainer.data.val.epoch(0)])
    with torch.no_grad():
        reference = model(images)
    quantize_model(model, "8/8-8/8-8/8-8/8")
    calibrate(model, [x for x, _, _ in trainer.data.train.epoch(0)][:2])
    with torch.no_grad():
        quantized = model(images)
    # An 8-bit step is 1/255 of each calibrated range (~0.4%); the errors of the stem, the SE convs
    # and the classifier add up to about 1% of the logits' spread, so 5% leaves a 5x margin.
    assert (quantized - reference).abs().max() < 0.05 * reference.std()
    assert (quantized.argmax(1) == reference.argmax(1)).float().mean() >= 0.9
    for name, param in model.named_parameters():
        if "binary_conv" in name:
            assert torch.equal(param, binary_before[name])


def test_uncalibrated_layer_is_an_error():
    model = quantize_model(bnext.create_model("bnext_tiny", num_classes=10, width_multiplier=0.25), "8/8")
    with pytest.raises(UserError, match="calibrate"):
        model.eval()(torch.randn(1, 3, 64, 64))
    assert all(not m.calibrating for m in model.modules() if isinstance(m, QuantizedMixin))


def test_profile_counts_qops_and_bit_widths_like_table2():
    model = quantize_model(bnext.create_model("bnext_tiny"), "8/8-4/8-4/8-8/8")
    cost = profile_model(model, 224)
    assert cost.flops == 0
    assert cost.qops == pytest.approx(13.4e6, rel=0.01)  # paper Table 2, BNext-T dagger
    assert cost.ops == pytest.approx(0.77e8, rel=0.01)
    assert cost.size_mib == pytest.approx(5.3, rel=0.03)


def test_finetune_leaves_binary_weights_and_trains_the_rest():
    from bnext.config import load_config
    from bnext.data import build_data
    from bnext.quant import finetune_quantized

    config = load_config(None, ["data.dataset=synthetic", "data.synthetic_size=64", "train.batch_size=16"])
    data = build_data(config)
    model = bnext.create_model("bnext_tiny", num_classes=10, width_multiplier=0.25)
    quantize_model(model, "8/8-4/8-4/8-8/8")
    calibrate(model, [x for x, _, _ in data.train.epoch(0)][:2])
    before = {n: p.clone() for n, p in model.named_parameters()}
    losses = finetune_quantized(model, data.train, epochs=1, lr=1e-3)
    assert len(losses) == 1
    for name, param in model.named_parameters():
        if "binary_conv" in name:
            assert torch.equal(param, before[name]), name
        assert param.requires_grad or name.endswith(("stem.prelu.weight", "activation1.weight"))
    assert not torch.equal(model.fc.weight, before["fc.weight"])
    assert not torch.equal(model.stem.conv1.weight, before["stem.conv1.weight"])
