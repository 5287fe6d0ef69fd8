"""The runtimes a user could pick instead of bnext's packed one: ONNX Runtime and OpenVINO.

* ``export_onnx``: a model (e.g. ``prebinarized_float_model``) as an ONNX file, dynamic batch;
* ``onnxruntime_session`` / ``openvino_fp32``: that file in ONNX Runtime / OpenVINO, fp32, N threads;
* ``openvino_binary``: the same file with every ``Sign -> Conv`` rewritten to OpenVINO's native
  1-bit op: ``FakeQuantize(levels=2)`` to 0/1, then ``BinaryConvolution`` (xnor-popcount,
  ``pad_value=0``: a padded pixel adds 0, as bnext's zero padding of sign(x) does);
* ``openvino_binary_layer``: one such conv with its per-channel scale, shift and PReLU, for per-layer timing.

Needs the optional ``bench`` extra (``pip install -e '.[bench]'``: onnx, onnxruntime, openvino).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bnext.errors import UserError

Runner = Callable[[np.ndarray], np.ndarray]


def _require(module: str):
    try:
        return __import__(module)
    except ImportError as error:
        raise UserError(f"{module} is not installed: pip install -e '.[bench]' (the optional peer runtimes)") from error


def export_onnx(model: nn.Module, path: str | Path, image_size: int, opset: int = 17) -> Path:
    """A copy of ``model`` in eval mode as ONNX with a dynamic batch axis (TorchScript exporter: no onnxscript
    needed); ``model`` itself is left as it is (mode, memory format)."""
    path = Path(path)
    example = torch.zeros(1, 3, image_size, image_size)
    model = copy.deepcopy(model).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=opset, input_names=["images"],
            output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
        )  # fmt: skip
    return path


def onnxruntime_session(path: str | Path, threads: int) -> Runner:
    """ONNX Runtime (CPU, all graph optimizations) on ``threads`` intra-op threads.

    Spinning is off: in an interleaved benchmark a spinning pool would steal the
    cores from the runtime timed next.
    """
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda images: session.run(None, {name: images})[0]


class OpenVinoRunner:
    """A compiled OpenVINO model called like a function; with ``perf_count`` it also reports per-node times."""

    def __init__(self, compiled) -> None:
        self.request = compiled.create_infer_request()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.request.infer({0: images})[0]

    def node_ms(self, node_types: tuple[str, ...]) -> float:
        """Milliseconds the last call spent in nodes of ``node_types`` (e.g. leaving out layout reorders)."""
        infos = self.request.profiling_info
        return sum(info.real_time.total_seconds() * 1e3 for info in infos if info.node_type in node_types)


def _compile(model, threads: int, input_shape: tuple[int, ...] | None = None, perf_count: bool = False):
    """Compile for the CPU with ``threads`` threads, fp32, at the static ``input_shape`` when given
    (BinaryConvolution has no dynamic-shape kernel)."""
    ov = _require("openvino")
    if input_shape is not None:
        model.reshape(list(input_shape))
    config = {
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",
        "PERF_COUNT": perf_count,
    }
    return OpenVinoRunner(ov.Core().compile_model(model, "CPU", config))


def openvino_fp32(path: str | Path, threads: int, input_shape: tuple[int, ...]) -> OpenVinoRunner:
    """OpenVINO's CPU plugin on the ONNX file for ``input_shape`` (N, C, H, W), fp32 (no bf16 even where the
    CPU has it)."""
    ov = _require("openvino")
    return _compile(ov.Core().read_model(str(path)), threads, input_shape)


def _fake_quantize_01(x):
    """0 for x <= 0, 1 above: OpenVINO's binarization, which its CPU plugin feeds to BinaryConvolution."""
    from openvino import opset13 as ops

    zero, one = (ops.constant(np.array(v, dtype=np.float32)) for v in (0.0, 1.0))
    return ops.fake_quantize(x, zero, zero, zero, one, 2)


def openvino_reads_weights(weight_shape: tuple[int, ...]) -> bool:
    """Whether OpenVINO's CPU kernel reads these packed weights right: it needs each output channel's
    ``C_in * k * k`` bits to fill whole bytes (true for every BNext layer; 70 channels of 3x3 are not)."""
    return int(np.prod(weight_shape[1:])) % 8 == 0


def _binary_convolution(x, weight_signs: np.ndarray, stride: int, padding: int):
    from openvino import Shape, Tensor, Type
    from openvino import opset13 as ops
    from openvino.op import Constant

    # 1 means +1, 0 means -1, packed 8 to a byte with the first weight in the lowest bit: the order
    # the CPU plugin's kernel reads (``opset.constant(..., dtype=u1)`` packs the highest bit first,
    # which that kernel reads with every byte reversed).
    packed = Tensor(Type.u1, Shape(list(weight_signs.shape)))
    packed.data[:] = np.packbits((weight_signs > 0).reshape(-1), bitorder="little")
    filters = Constant(packed)
    return ops.binary_convolution(
        _fake_quantize_01(x), filters, [stride] * 2, [padding] * 2, [padding] * 2, [1, 1], "xnor-popcount", 0.0
    )


def binary_ov_model(path: str | Path):
    """The ONNX file as an OpenVINO model whose ``Sign -> Conv`` pairs run as ``BinaryConvolution``."""
    ov = _require("openvino")
    from openvino import opset13 as ops

    model = ov.Core().read_model(str(path))
    rewritten = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Convolution":
            continue
        source = op.input_value(0).get_node()
        weights = op.input_value(1).get_node()
        if source.get_type_name() != "Sign" or weights.get_type_name() != "Constant":
            continue
        kernel = weights.get_data()
        # The exporter folds the following BatchNorm into the weights: each output channel is
        # +-s_o, a binary conv times s_o.
        magnitude = np.abs(kernel).reshape(len(kernel), -1)
        scale = magnitude[:, :1]
        attrs = op.get_attributes()
        strides, pads = attrs["strides"], attrs["pads_begin"]
        binary_weights = np.allclose(magnitude, scale, rtol=1e-6, atol=0) and bool((scale > 0).all())
        plain = len(set(strides)) == 1 and pads == attrs["pads_end"] and openvino_reads_weights(kernel.shape)
        if not (binary_weights and plain):
            continue
        binary = _binary_convolution(source.input_value(0), kernel, strides[0], pads[0])
        if not np.all(scale == 1):
            binary = ops.multiply(binary, ops.constant(scale.reshape(1, -1, 1, 1).astype(np.float32)))
        op.output(0).replace(binary.output(0))
        rewritten += 1
    if not rewritten:
        raise UserError(f"{path} has no Sign -> Conv pair with +-1 weights to run as BinaryConvolution")
    model.validate_nodes_and_infer_types()
    return model


def openvino_binary(path: str | Path, threads: int, input_shape: tuple[int, ...]) -> OpenVinoRunner:
    """OpenVINO with its native BinaryConvolution for every binary conv of the ONNX file (see module doc), for
    inputs of ``input_shape``."""
    return _compile(binary_ov_model(path), threads, input_shape)


def openvino_binary_layer(
    in_shape: tuple[int, int, int, int],
    weight_signs: np.ndarray,
    stride: int,
    padding: int,
    threads: int,
    epilogue: bool = True,
) -> OpenVinoRunner:
    """One binary conv in OpenVINO: binarize, BinaryConvolution and, with ``epilogue``, a per-channel scale,
    shift and PReLU (the work of one packed bnext op, whose epilogue applies the folded BatchNorm and PReLU).
    Per-node times are on (``OpenVinoRunner.node_ms``)."""
    ov = _require("openvino")
    from openvino import opset13 as ops

    if not openvino_reads_weights(weight_signs.shape):
        raise UserError(f"OpenVINO's binary kernel misreads weights of shape {weight_signs.shape}: C_in*k*k % 8 != 0")
    x = ops.parameter(list(in_shape), np.float32)
    y = _binary_convolution(x, weight_signs, stride, padding)
    if epilogue:
        rng = np.random.default_rng(0)
        shape = (1, weight_signs.shape[0], 1, 1)
        scale, shift, slope = (ops.constant(rng.uniform(0.5, 1.5, shape).astype(np.float32)) for _ in range(3))
        y = ops.prelu(ops.add(ops.multiply(y, scale), shift), slope)
    return _compile(ov.Model([y], [x], "binary_conv"), threads, perf_count=True)
