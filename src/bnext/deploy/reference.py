"""The ``.bnx`` v2 graph run with float torch ops: the reference the C++ runtime is tested against, and the
fallback where the runtime is not installed.

Each op is written from its definition in docs/bnx-format.md, independently of the C++ code: a binary
conv is a float conv of sign(x + shift) and the +-1 weights, PTQ layers dequantize their codes and
fake-quantize their inputs as ``bnext.quant`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bnext.deploy.packing import unpack_codes, unpack_signs
from bnext.quant.quantizers import fake_quantize

Params = Mapping[str, torch.Tensor]


def run_graph(
    graph: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    images: torch.Tensor,
    observe: Callable[[Mapping[str, Any], Params], None] | None = None,
) -> torch.Tensor:
    """Logits (N, classes) of NCHW float ``images``; ``observe(op, inputs)`` sees each op before it runs."""
    values = {graph["input"]["name"]: images.float()}
    for op in graph["ops"]:
        params = {role: torch.from_numpy(arrays[name]) for role, name in op["params"].items()}
        inputs = {role: values[name] for role, name in op["inputs"].items()}
        if observe is not None:
            observe(op, inputs)
        values[op["output"]] = _OPS[op["op"]](inputs, params, op["attrs"])
    return values[graph["output"]].flatten(1)


def _dense_weight(params: Params, attrs: Mapping[str, Any], prefix: str = "") -> torch.Tensor:
    """(out, in) float weight: stored fp32, or (codes / alpha + beta) * scale per output channel."""
    if f"{prefix}weight" in params:
        return params[f"{prefix}weight"].flatten(1)
    shape = (attrs["out_features"], attrs["in_features"])
    codes = unpack_codes(params[f"{prefix}codes"].numpy(), attrs["weight_bits"], shape)
    alpha, beta, scale = (params[f"{prefix}{key}"].view(-1, 1) for key in ("alpha", "beta", "scale"))
    return (codes / alpha + beta) * scale


def _quantized_input(x: torch.Tensor, attrs: Mapping[str, Any]) -> torch.Tensor:
    spec = attrs.get("input_quant")
    if spec is None:
        return x
    return fake_quantize(x, torch.tensor(spec["low"]), torch.tensor(spec["high"]), spec["bits"])


def _dense(x: torch.Tensor, params: Params, attrs: Mapping[str, Any], prefix: str = "") -> torch.Tensor:
    """A linear layer on (N, in) rows (the tail's squeeze / expand, the classifier)."""
    return F.linear(_quantized_input(x, attrs), _dense_weight(params, attrs, prefix), params.get(f"{prefix}bias"))


def _channel(v: torch.Tensor) -> torch.Tensor:
    return v.view(1, -1, 1, 1)


def _prelu(x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, x, x * _channel(slope))


def _conv2d(inputs: Params, params: Params, attrs: Mapping[str, Any]) -> torch.Tensor:
    kernel = attrs["kernel"]
    weight = _dense_weight(params, attrs).reshape(attrs["out_features"], -1, kernel, kernel)
    x = _quantized_input(inputs["x"], attrs)
    y = F.conv2d(x, weight, params.get("bias"), attrs["stride"], attrs["padding"])
    if "out_scale" in params:
        y = y * _channel(params["out_scale"]) + _channel(params["out_shift"])
    return y


def _linear(inputs: Params, params: Params, attrs: Mapping[str, Any]) -> torch.Tensor:
    return _dense(inputs["x"].flatten(1), params, attrs)[:, :, None, None]


def _binary_conv(inputs: Params, params: Params, attrs: Mapping[str, Any]) -> torch.Tensor:
    shape = (attrs["out_channels"], attrs["in_channels"], attrs["kernel"], attrs["kernel"])
    signs = unpack_signs(params["bits"].numpy(), shape)
    binary = torch.where(inputs["x"] + _channel(params["input_shift"]) < 0, -1.0, 1.0)
    y = F.conv2d(binary, signs, stride=attrs["stride"], padding=attrs["padding"])
    y = _channel(params["scale"]) * y + _channel(params["shift"])
    return _prelu(y, params["slope"]) if "slope" in params else y


def _unit_tail(inputs: Params, params: Params, attrs: Mapping[str, Any]) -> torch.Tensor:
    y = inputs["y"]
    pool = (lambda t: F.avg_pool2d(t, 2)) if attrs["pool"] else (lambda t: t)
    if "residual" in inputs:
        residual = shortcut = inputs["residual"]
    else:
        x = inputs["x"]
        shortcut = pool(x)
        residual = pool(_prelu(x, params["act_slope"])) if "act_slope" in params else shortcut
    gate = 1.0
    if "gate_source" in attrs:
        source = {"residual": residual, "shortcut": shortcut}.get(attrs["gate_source"], inputs.get("gate_input"))
        pooled = source.mean(dim=(2, 3))
        if "mix" in params:
            pooled = params["mix"] * pooled + (1 - params["mix"]) * y.mean(dim=(2, 3))
        hidden = torch.relu(_dense(pooled, params, attrs["squeeze"], "squeeze."))
        gate = torch.sigmoid(_dense(hidden, params, attrs["expand"], "expand."))[:, :, None, None]
    v = gate * y * residual if attrs["elm"] else gate * y
    out = _channel(params["norm_scale"]) * v + _channel(params["norm_shift"]) + residual
    if "post_slope" in params:
        if "post_shift_in" in params:
            out = out + _channel(params["post_shift_in"])
        out = _prelu(out, params["post_slope"])
        if "post_shift_out" in params:
            out = out + _channel(params["post_shift_out"])
    return out


def _pool(kind: str) -> Callable[[Params, Params, Mapping[str, Any]], torch.Tensor]:
    function = F.max_pool2d if kind == "max" else F.avg_pool2d

    def run(inputs: Params, params: Params, attrs: Mapping[str, Any]) -> torch.Tensor:
        return function(inputs["x"], attrs["kernel"], attrs["stride"], attrs["padding"])

    return run


_OPS: dict[str, Callable[[Params, Params, Mapping[str, Any]], torch.Tensor]] = {
    "conv2d": _conv2d,
    "linear": _linear,
    "binary_conv": _binary_conv,
    "unit_tail": _unit_tail,
    "prelu": lambda i, p, a: _prelu(i["x"], p["slope"]),
    "channel_affine": lambda i, p, a: i["x"] * _channel(p["scale"]) + _channel(p["shift"]),
    "add": lambda i, p, a: i["a"] + i["b"],
    "concat": lambda i, p, a: torch.cat([i[f"x{k}"] for k in range(len(i))], dim=1),
    "max_pool": _pool("max"),
    "avg_pool": _pool("avg"),
    "global_avg_pool": lambda i, p, a: i["x"].mean(dim=(2, 3), keepdim=True),
}
