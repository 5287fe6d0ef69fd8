"""The peer runtimes of the benchmark compute what bnext computes (skipped without the optional bench extra)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bnext import create_model
from bnext.deploy.bench import prebinarized_float_model
from bnext.nn import BinaryConv2d, set_temperature

pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")
from bnext.deploy import peers

LAYERS = [((1, 40, 9, 9), 3, 1), ((2, 72, 8, 8), 3, 2), ((1, 64, 5, 5), 1, 1)]


@pytest.mark.parametrize("in_shape, kernel, stride", LAYERS)
def test_openvino_binary_convolution_is_the_float_conv_of_signs(in_shape, kernel, stride):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(in_shape, generator=generator)
    signs = torch.sign(torch.randn(24, in_shape[1], kernel, kernel, generator=generator))
    padding = kernel // 2
    run = peers.openvino_binary_layer(in_shape, signs.numpy(), stride, padding, threads=1, epilogue=False)
    expected = F.conv2d(torch.sign(x), signs, stride=stride, padding=padding)  # zero padding of sign(x)
    assert np.array_equal(run(x.numpy()), expected.numpy())  # integer sums: exact


@pytest.fixture(scope="module")
def small_model_onnx(tmp_path_factory):
    model = create_model("bnext_tiny", num_classes=10, width_multiplier=0.25)
    set_temperature(model, 0.0)
    float_model = prebinarized_float_model(model)
    path = peers.export_onnx(float_model, tmp_path_factory.mktemp("onnx") / "tiny.onnx", 64)
    return float_model, path, sum(isinstance(m, BinaryConv2d) for m in model.modules())


def test_every_binary_conv_becomes_openvino_binary_convolution(small_model_onnx):
    _, path, binary_convs = small_model_onnx
    ops = [op.get_type_name() for op in peers.binary_ov_model(path).get_ordered_ops()]
    assert ops.count("BinaryConvolution") == binary_convs
    assert ops.count("Sign") == 0


@pytest.mark.parametrize("runtime", ["openvino_binary", "openvino_fp32", "onnxruntime_session"])
def test_peer_runtimes_give_pytorchs_logits(small_model_onnx, runtime):
    float_model, path, _ = small_model_onnx
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected = float_model(images.contiguous(memory_format=torch.channels_last)).numpy()
    shape = () if runtime == "onnxruntime_session" else (tuple(images.shape),)
    logits = getattr(peers, runtime)(path, 1, *shape)(images.numpy())
    assert logits.shape == expected.shape
    assert np.abs(logits - expected).max() <= 1e-4 * np.abs(expected).max()


def test_a_graph_without_binary_convs_is_refused(tmp_path):
    path = peers.export_onnx(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()), tmp_path / "fp.onnx", 8)
    with pytest.raises(peers.UserError, match="no Sign -> Conv"):
        peers.binary_ov_model(path)


def test_weights_openvino_would_misread_are_refused():
    assert not peers.openvino_reads_weights((24, 70, 3, 3))  # 630 bits per output channel
    with pytest.raises(peers.UserError, match="misreads"):
        peers.openvino_binary_layer((1, 70, 8, 8), np.ones((24, 70, 3, 3), np.float32), 1, 1, threads=1)
