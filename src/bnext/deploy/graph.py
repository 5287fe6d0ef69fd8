"""The graph a ``.bnx`` v2 file carries: ops in execution order over named activations (docs/bnx-format.md).

Every activation is a float NHWC tensor named by the op that writes it (the model input is
``"input"``). An op reads activations by role (``inputs``), stored tensors by role (``params``:
role -> tensor name in the file) and plain values (``attrs``). The runtime needs nothing else:
no model code, no registry. :class:`GraphBuilder` is how export (``bnext.deploy.lowering``)
writes one; :data:`OPS` lists what each op kind takes, and is the Python owner of that contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

INPUT = "input"


@dataclass(frozen=True)
class OpKind:
    """The roles an op kind takes: required / optional activations and params."""

    inputs: tuple[str, ...]
    params: tuple[str, ...] = ()
    optional_inputs: tuple[str, ...] = ()
    optional_params: tuple[str, ...] = ()


# Dense weights (conv2d, linear, the tail's squeeze / expand) are "weight" in fp32, or for PTQ "codes" with
# per-output-channel "alpha", "beta", "scale": weight = (codes / alpha + beta) * scale.
_DENSE = ("weight", "codes", "alpha", "beta", "scale", "bias")
OPS: dict[str, OpKind] = {
    "conv2d": OpKind(("x",), optional_params=(*_DENSE, "out_scale", "out_shift")),
    "linear": OpKind(("x",), optional_params=_DENSE),
    "binary_conv": OpKind(("x",), ("bits", "input_shift", "scale", "shift"), optional_params=("slope",)),
    "unit_tail": OpKind(
        ("y",),
        ("norm_scale", "norm_shift"),
        optional_inputs=("x", "residual", "gate_input"),
        optional_params=(
            "act_slope",
            "mix",
            *(f"squeeze.{p}" for p in _DENSE),
            *(f"expand.{p}" for p in _DENSE),
            "post_shift_in",
            "post_slope",
            "post_shift_out",
        ),
    ),
    "prelu": OpKind(("x",), ("slope",)),
    "channel_affine": OpKind(("x",), ("scale", "shift")),
    "add": OpKind(("a", "b")),
    "concat": OpKind(("x0",), optional_inputs=tuple(f"x{i}" for i in range(1, 16))),
    "max_pool": OpKind(("x",)),
    "avg_pool": OpKind(("x",)),
    "global_avg_pool": OpKind(("x",)),
}


@dataclass
class Op:
    """One step: ``output = kind(inputs, params, attrs)``; ``name`` is the module path it came from."""

    kind: str
    name: str
    inputs: dict[str, str]
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)

    @property
    def output(self) -> str:
        return self.name

    def as_dict(self) -> dict[str, Any]:
        return {
            "op": self.kind,
            "name": self.name,
            "inputs": self.inputs,
            "output": self.output,
            "attrs": self.attrs,
            "params": self.params,
        }


@dataclass
class Activation:
    """What export knows of an activation: its channels and its total stride from the input."""

    channels: int
    stride: int


class GraphBuilder:
    """Collects ops and the arrays they read, checking each op's roles against :data:`OPS`."""

    def __init__(self, in_channels: int) -> None:
        self.ops: list[Op] = []
        self.arrays: dict[str, np.ndarray] = {}
        self.activations: dict[str, Activation] = {INPUT: Activation(in_channels, 1)}

    def channels(self, value: str) -> int:
        return self.activations[value].channels

    def add(
        self,
        kind: str,
        name: str,
        inputs: dict[str, str],
        *,
        channels: int,
        stride: int = 1,
        attrs: dict[str, Any] | None = None,
        params: dict[str, np.ndarray] | None = None,
    ) -> str:
        """Append an op; ``params`` are arrays, stored as ``"{name}.{role}"``. Returns the output's name."""
        spec = OPS[kind]
        params = {role: array for role, array in (params or {}).items() if array is not None}
        missing = [r for r in (*spec.inputs, *spec.params) if r not in {**inputs, **params}]
        unknown = [r for r in inputs if r not in (*spec.inputs, *spec.optional_inputs)]
        unknown += [r for r in params if r not in (*spec.params, *spec.optional_params)]
        if missing or unknown or name in self.activations:
            raise ValueError(f"{kind} op {name!r}: missing {missing}, unknown {unknown} (or a duplicate name)")
        stored = {}
        for role, array in params.items():
            stored[role] = f"{name}.{role}"
            self.arrays[stored[role]] = _stored_array(array)
        self.ops.append(Op(kind, name, dict(inputs), dict(attrs or {}), stored))
        in_stride = max(self.activations[v].stride for v in inputs.values())
        self.activations[name] = Activation(channels, in_stride * stride)
        return name

    def graph(self, output: str, height: int, width: int) -> dict[str, Any]:
        """The header's ``graph`` object, with ``output`` as the logits."""
        source = self.activations[INPUT]
        return {
            "input": {
                "name": INPUT,
                "channels": source.channels,
                "height": height,
                "width": width,
                "multiple": max(a.stride for a in self.activations.values()),
            },
            "output": output,
            "classes": self.channels(output),
            "ops": [op.as_dict() for op in self.ops],
        }


def _stored_array(array: Any) -> np.ndarray:
    """float32 or uint8, contiguous, as the file stores them."""
    array = np.ascontiguousarray(array.detach().cpu().numpy() if hasattr(array, "detach") else array)
    if array.dtype == np.uint8:
        return array
    return array.astype(np.float32)
