"""Cost accounting against the paper's Table 2."""

import json

import pytest

import bnext
from bnext.analysis import profile_model
from bnext.cli import main

TABLE2 = {  # BOPs, OPs, size (MB column "w/o Post-Quant")
    "bnext_tiny": (4.82e9, 0.88e8, 13.3),
    "bnext_small": (10.84e9, 1.90e8, 26.7),
    "bnext_middle": (20.09e9, 3.38e8, 46.5),
    "bnext_large": (52.15e9, 8.54e8, 106.1),
    "bnext18": (1.68e9, 1.64e8, 5.4),
}


@pytest.mark.parametrize("name", sorted(TABLE2))
def test_bops_ops_and_size_match_table2_within_1_percent(name):
    bops, ops, size = TABLE2[name]
    cost = profile_model(bnext.create_model(name), 224)
    assert cost.bops == pytest.approx(bops, rel=0.01)
    assert cost.ops == pytest.approx(ops, rel=0.01)
    assert cost.size_mib == pytest.approx(size, rel=0.01)
    assert cost.ops == pytest.approx(cost.bops / 64 + cost.flops)
    assert cost.binarization_degree == pytest.approx(cost.bops / 64 / cost.ops)
    total = sum(p.numel() for p in bnext.create_model(name).parameters())
    assert cost.params_fp + cost.params_binary == total


def test_bops_of_one_layer_by_hand():
    model = bnext.create_model("bnext_tiny", num_classes=10)
    layer = next(layer for layer in profile_model(model, 224).layers if layer.name == "blocks.0.mixer.binary_conv")
    # 32 -> 32 channels, 3x3, stride 1 at 112x112 (stem stride 2): 112*112*32*32*9 binary MACs.
    assert layer.kind == "binary" and layer.macs == 112 * 112 * 32 * 32 * 9


def test_profile_cli_json_keys(capsys):
    assert main(["profile", "bnext_tiny", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for key in ("params_fp", "params_binary", "size_mib", "bops", "flops", "ops", "binarization_degree"):
        assert key in data
    assert data["bops"] == pytest.approx(4.82e9, rel=0.01)


def test_profile_cli_table_and_unknown_model(capsys):
    assert main(["profile", "bnext18", "--input-size", "32", "--num-classes", "10", "--stem-stride", "1"]) == 0
    out = capsys.readouterr().out
    assert "layer1.0.mixer.binary_conv" in out and "BOPs" in out
    assert main(["profile", "resnet9000"]) == 2
    assert "unknown model 'resnet9000'" in capsys.readouterr().err


def test_profile_cli_with_quant_config(capsys):
    assert main(["profile", "bnext_tiny", "--quant", "8/8-4/8-4/8-8/8", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["qops"] == pytest.approx(13.4e6, rel=0.01) and data["flops"] == 0
    assert main(["profile", "bnext_tiny", "--quant", "8/8-4"]) == 2
    assert "quant config" in capsys.readouterr().err
