"""Speed of the packed runtime against PyTorch fp32, measured as ratios within one run.

* Per layer: every binary conv of the model (the C++ runtime's op: shift + sign + pack +
  XNOR/popcount conv + folded BN/PReLU, run as a model of its own, its time as the runtime
  reports it) against ``torch.nn.functional.conv2d`` of the same shape on +-1 floats, both
  with the same threads; torch is timed in channels_last and in NCHW, and the faster of the
  two is the baseline we divide by.
* End to end: the packed model against the same model in PyTorch fp32 eval with its binary
  weights pre-binarized (plain convs holding sign(w), channels_last), plus where the packed
  model's time goes (binary convs vs the fp ops around them, from the runtime's per-op times).

Timings are medians of ``reps`` calls after warm-up, the two sides interleaved so that
machine noise hits both alike.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bnext.card import ModelCard
from bnext.deploy.export import packed_model
from bnext.deploy.fileformat import encode_bnx
from bnext.deploy.reference import run_graph
from bnext.deploy.runtime import PackedModel, load_packed, native_runtime, resolved_path
from bnext.hardware import cpu_model, isa_summary
from bnext.nn import set_temperature
from bnext.nn.binary_conv import BinaryConv2d

if TYPE_CHECKING:
    import bnext_runtime


class SignConv(nn.Module):
    """A plain fp32 conv holding a binary conv's pre-binarized weights (the PyTorch baseline)."""

    def __init__(self, conv: BinaryConv2d) -> None:
        super().__init__()
        self.register_buffer("weight", torch.sign(conv.weight.detach()).contiguous(memory_format=torch.channels_last))
        self.stride, self.padding = conv.stride, conv.padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, stride=self.stride, padding=self.padding)


def prebinarized_float_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode, channels_last, with every BinaryConv2d a plain conv on sign(w)."""
    model = copy.deepcopy(model).eval()
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, BinaryConv2d):
                setattr(module, child_name, SignConv(child))
    return model.to(memory_format=torch.channels_last)


def packed_from_model(
    model: nn.Module, name: str, kwargs: dict[str, Any], kernel_path: str | None = None
) -> PackedModel:
    """The packed runtime of an in-memory model (binarizers set to exact sign first)."""
    model = copy.deepcopy(model).eval()
    set_temperature(model, 0.0)
    card = ModelCard.from_create_kwargs(name, kwargs, getattr(model, "num_classes", 1000))
    header, arrays, _ = packed_model(model, card)
    return load_packed(header, arrays, kernel_path)


# Calls per turn of a runtime in an interleaved timing (the first untimed), and the pause before each turn: thread
# pools spin for a while after a call (PyTorch's OpenMP threads for milliseconds), and a runtime timed while
# another's threads still spin shares its cores with them. bnext's runtime has its own pool since it dropped
# OpenMP, so it no longer shares PyTorch's: timed right after PyTorch calls without the pause, a 3x3 conv of
# bnext_small read 2.8 ms at 2 threads instead of 1.4.
TURN_CALLS = 5
SETTLE_SECONDS = 0.02


def median_seconds(
    calls: dict[str, Callable[[], Any]], reps: int, warmup: int = 2, block: int = 1, settle: float = 0.0
) -> dict[str, float]:
    """Median wall time of each call, the calls interleaved rep by rep.

    With ``block > 1`` each turn runs one call ``block`` times in a row, the first untimed, after a pause of
    ``settle`` seconds: thread pools spin for a while after a call and sleep after longer idling, so in one
    process a runtime timed right after another would pay for the other's spinning pool or for waking its own.
    """
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {key: [] for key in calls}
    for _ in range(max(1, reps // block)):
        for key, call in calls.items():
            if settle > 0:
                time.sleep(settle)
            if block > 1:
                call()
            for _ in range(block):
                start = time.perf_counter()
                call()
                times[key].append(time.perf_counter() - start)
    return {key: median(values) for key, values in times.items()}


def timed_calls(values: list[float], block: int, warmup: int = 2) -> list[float]:
    """What a call recorded itself (e.g. an op's own time) on the calls :func:`median_seconds` timed: without
    its ``warmup`` calls and, with ``block > 1``, each turn's untimed first call."""
    values = values[warmup:]
    return values if block <= 1 else [v for i, v in enumerate(values) if i % (block + 1) != 0]


def median(values: list[float]) -> float:
    """The upper median (no averaging: always one measured value)."""
    return sorted(values)[len(values) // 2]


@contextmanager
def threads(count: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class BinaryLayer:
    """One binary conv op of a packed model, with the input shape (N, C, H, W) it sees."""

    name: str
    shape: tuple[int, ...]
    attrs: dict[str, Any]
    op: dict[str, Any]
    arrays: dict[str, np.ndarray]


def binary_layer_inputs(packed: PackedModel, images: torch.Tensor) -> list[BinaryLayer]:
    """Each binary conv of ``packed`` with the shape of its input for ``images``."""
    found: list[BinaryLayer] = []

    def observe(op: dict[str, Any], inputs: dict[str, torch.Tensor]) -> None:
        if op["op"] == "binary_conv":
            arrays = {name: packed.arrays[name] for name in op["params"].values()}
            found.append(BinaryLayer(op["name"], tuple(inputs["x"].shape), op["attrs"], op, arrays))

    run_graph(packed.header["graph"], packed.arrays, images, observe)
    return found


class LayerRunner:
    """One binary conv as a model of its own in the C++ runtime; each call runs it and records the op's own
    time (without the model input's NCHW -> NHWC copy), as OpenVINO's profiler reports its kernels."""

    def __init__(self, layer: BinaryLayer, threads: int, kernel_path: str | None = None) -> None:
        c, h, w = layer.shape[1:]
        graph = {
            "input": {"name": "input", "channels": c, "height": h, "width": w, "multiple": 1},
            "output": layer.op["output"],
            "classes": layer.attrs["out_channels"],
            "ops": [{**layer.op, "inputs": {"x": "input"}}],
        }
        header = {"format": "bnext-packed", "card": {}, "graph": graph}
        self.model = native_runtime().load(encode_bnx(header, layer.arrays), kernel_path, threads)
        self.seconds: list[float] = []

    def __call__(self, x: np.ndarray) -> None:
        ((_, _, seconds),) = self.model.profile(x)
        self.seconds.append(seconds)


def torch_conv_calls(x: torch.Tensor, signs: torch.Tensor, layer: BinaryLayer) -> dict[str, Callable[[], Any]]:
    """The PyTorch fp32 baseline of one binary conv: ``F.conv2d`` of sign(x) and the +-1 ``signs``, in
    channels_last and in NCHW (the caller keeps the faster)."""
    x_sign = torch.sign(x).contiguous(memory_format=torch.channels_last)
    x_nchw, weight_cl = x_sign.contiguous(), signs.contiguous(memory_format=torch.channels_last)
    stride, padding = layer.attrs["stride"], layer.attrs["padding"]
    return {
        "torch_channels_last": lambda: F.conv2d(x_sign, weight_cl, stride=stride, padding=padding),
        "torch_nchw": lambda: F.conv2d(x_nchw, signs, stride=stride, padding=padding),
    }


def conv_shape(layer: BinaryLayer) -> tuple[int, int, int, int]:
    """(out, in, k, k) of the layer's weight."""
    a = layer.attrs
    return (a["out_channels"], a["in_channels"], a["kernel"], a["kernel"])


def binary_conv_macs(layer: BinaryLayer) -> int:
    """Binary multiply-accumulates of ``layer`` on its input."""
    n, c, h, w = layer.shape
    a = layer.attrs
    out_h = (h + 2 * a["padding"] - a["kernel"]) // a["stride"] + 1
    out_w = (w + 2 * a["padding"] - a["kernel"]) // a["stride"] + 1
    return n * out_h * out_w * a["out_channels"] * c * a["kernel"] ** 2


def time_layer(layer: BinaryLayer, generator: torch.Generator, reps: int) -> dict[str, Any]:
    """One binary conv: the runtime's op vs torch fp32 conv2d of the same shape (channels_last and NCHW),
    interleaved, at torch's current thread count."""
    x = torch.randn(layer.shape, generator=generator)
    signs = torch.sign(torch.randn(conv_shape(layer), generator=generator))
    runner = LayerRunner(layer, torch.get_num_threads())
    array = x.numpy()
    with torch.inference_mode():
        calls = {**torch_conv_calls(x, signs, layer), "packed": lambda: runner(array)}
        seconds = median_seconds(calls, max(reps, TURN_CALLS), block=TURN_CALLS, settle=SETTLE_SECONDS)
    packed = median(timed_calls(runner.seconds, TURN_CALLS))
    macs = binary_conv_macs(layer)
    best_torch = min(seconds["torch_channels_last"], seconds["torch_nchw"])
    return {
        "layer": layer.name,
        "kernel": layer.attrs["kernel"],
        "stride": layer.attrs["stride"],
        "in_channels": layer.attrs["in_channels"],
        "out_channels": layer.attrs["out_channels"],
        "input_hw": list(layer.shape[2:]),
        "macs": macs,
        "torch_channels_last_ms": 1e3 * seconds["torch_channels_last"],
        "torch_nchw_ms": 1e3 * seconds["torch_nchw"],
        "packed_ms": 1e3 * packed,
        "torch_fp32_gflops": 2 * macs / best_torch / 1e9,
        "packed_binary_gmacs": macs / packed / 1e9,
        "speedup_vs_channels_last": seconds["torch_channels_last"] / packed,
        "speedup": best_torch / packed,
    }


def bench_layers(packed: PackedModel, images: torch.Tensor, reps: int) -> list[dict[str, Any]]:
    """Every binary conv of ``packed`` timed by :func:`time_layer` at the input shapes ``images`` produce."""
    generator = torch.Generator().manual_seed(0)
    return [time_layer(layer, generator, reps) for layer in binary_layer_inputs(packed, images)]


def time_split(packed: PackedModel, images: torch.Tensor, reps: int) -> dict[str, float]:
    """Share of the packed model's run inside the binary convs (pack + GEMM + epilogue) vs the other ops, from
    the runtime's per-op times (median over ``reps`` runs per op)."""
    rows = [packed.native.profile(images.numpy()) for _ in range(reps)]
    per_op = [median([row[i][2] for row in rows]) for i in range(len(rows[0]))]
    inside = sum(t for t, (_, kind, _) in zip(per_op, rows[0], strict=True) if kind == "binary_conv")
    return {"binary_conv_share": inside / sum(per_op), "fp_ops_share": 1 - inside / sum(per_op)}


def op_breakdown(native: bnext_runtime.Model, images: np.ndarray, reps: int) -> dict[str, float]:
    """Median ms per op kind of one run of a C++ runtime model (``PackedModel.native``: the runtime's own per-op
    times)."""
    rows = [native.profile(images) for _ in range(reps)]
    totals: dict[str, float] = {}
    for index, (_, kind, _) in enumerate(rows[0]):
        totals[kind] = totals.get(kind, 0.0) + 1e3 * median([row[index][2] for row in rows])
    return totals


def bench_end_to_end(float_model: nn.Module, packed: PackedModel, images: torch.Tensor, reps: int) -> dict[str, float]:
    """PyTorch fp32 eval (pre-binarized weights, channels_last) vs the packed runtime on ``images``."""
    channels_last = images.contiguous(memory_format=torch.channels_last)
    packed.set_threads(torch.get_num_threads())
    with torch.inference_mode():
        seconds = median_seconds({"torch": lambda: float_model(channels_last), "packed": lambda: packed(images)}, reps)
    row = {
        "torch_fp32_ms": 1e3 * seconds["torch"],
        "packed_ms": 1e3 * seconds["packed"],
        "speedup": seconds["torch"] / seconds["packed"],
    }
    if packed.native is not None:  # the torch reference (no runtime installed) has no per-op times
        row.update(time_split(packed, images, max(3, reps // 2)))
    return row


def geometric_mean(values: list[float]) -> float:
    return float(torch.tensor(values, dtype=torch.float64).log().mean().exp())


def run_benchmark(
    model: nn.Module,
    name: str,
    kwargs: dict[str, Any],
    *,
    input_size: int,
    batches: list[int],
    thread_counts: list[int],
    reps: int,
    layers: bool = True,
) -> dict[str, Any]:
    """End-to-end speedups for every (batch, threads) pair, and per-layer speedups at each thread count, batch 1."""
    float_model = prebinarized_float_model(model)
    packed = packed_from_model(model, name, kwargs)
    generator = torch.Generator().manual_seed(0)
    result: dict[str, Any] = {
        "model": name,
        "model_kwargs": kwargs,
        "input_size": input_size,
        "cpu": cpu_model(),
        "isa": isa_summary(),
        "kernel_path": resolved_path(None),
        "end_to_end": [],
    }
    for count in thread_counts:
        with threads(count):
            for batch in batches:
                images = torch.randn(batch, 3, input_size, input_size, generator=generator)
                row = {"batch": batch, "threads": count, **bench_end_to_end(float_model, packed, images, reps)}
                result["end_to_end"].append(row)
            if layers:
                images = torch.randn(1, 3, input_size, input_size, generator=generator)
                rows = bench_layers(packed, images, reps)
                result.setdefault("layers", {})[f"threads_{count}"] = rows
                for kernel in sorted({r["kernel"] for r in rows}):
                    speedups = [r["speedup"] for r in rows if r["kernel"] == kernel]
                    result.setdefault("layer_geomean_speedup", {})[f"{kernel}x{kernel}_threads_{count}"] = (
                        geometric_mean(speedups)
                    )
    return result


def format_report(result: dict[str, Any]) -> str:
    """A readable table of :func:`run_benchmark` output."""
    flags = ", ".join(flag for flag, present in result["isa"].items() if present) or "none of the tracked flags"
    lines = [
        f"{result['model']} at {result['input_size']} px: packed runtime vs PyTorch fp32 eval",
        f"CPU: {result['cpu']} ({flags}); kernel path: {result['kernel_path']}",
    ]
    lines.append(f"{'batch':>5} {'threads':>7} {'torch ms':>9} {'packed ms':>9} {'speedup':>8} {'in binary convs':>16}")
    for row in result["end_to_end"]:
        share = f"{100 * row['binary_conv_share']:>15.0f}%" if "binary_conv_share" in row else f"{'-':>16}"
        lines.append(
            f"{row['batch']:>5} {row['threads']:>7} {row['torch_fp32_ms']:>9.2f} {row['packed_ms']:>9.2f} "
            f"{row['speedup']:>7.1f}x {share}"
        )
    for key, rows in result.get("layers", {}).items():
        lines.append(f"binary convs, batch 1, {key.replace('_', ' ')}:")
        lines.append(
            f"  {'layer':<28} {'shape':<22} {'packed ms':>9} {'G bin MAC/s':>11} {'torch ms':>9} {'speedup':>8}"
        )
        for row in rows:
            shape = (
                f"{row['in_channels']}->{row['out_channels']} k{row['kernel']} s{row['stride']} {row['input_hw'][0]}px"
            )
            torch_ms = min(row["torch_channels_last_ms"], row["torch_nchw_ms"])
            lines.append(
                f"  {row['layer'][-28:]:<28} {shape:<22} {row['packed_ms']:>9.3f} {row['packed_binary_gmacs']:>11.0f} "
                f"{torch_ms:>9.3f} {row['speedup']:>7.1f}x"
            )
    for key, value in result.get("layer_geomean_speedup", {}).items():
        lines.append(f"per-layer geometric-mean speedup, {key.replace('_', ' ')}: {value:.1f}x")
    return "\n".join(lines)
