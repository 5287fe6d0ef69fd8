"""Speed of the packed runtime against PyTorch fp32, measured as ratios within one run.

* Per layer: every binary conv of the model (its packed op: shift + sign + pack +
  XNOR/popcount conv + folded BN/PReLU) against ``torch.nn.functional.conv2d`` of the same
  shape on +-1 floats, both with the same threads; torch is timed in channels_last (as
  asked) and in NCHW, and the faster of the two is the baseline we divide by.
* End to end: the packed model against the same model in PyTorch fp32 eval with its binary
  weights pre-binarized (plain convs holding sign(w), channels_last), plus where the packed
  model's time goes (binary convs vs the fp ops around them).

Timings are medians of ``reps`` calls after warm-up, the two sides interleaved so that
machine noise hits both alike.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bnext.card import ModelCard
from bnext.deploy.export import packed_entries, packed_header
from bnext.deploy.fused_unit import separate_kernel_calls
from bnext.deploy.kernels import resolved_path
from bnext.deploy.runtime import PackedBinaryConv, PackedModel, build_packed_model
from bnext.hardware import cpu_model, isa_summary
from bnext.nn import set_temperature
from bnext.nn.binary_conv import BinaryConv2d


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


def packed_from_model(model: nn.Module, name: str, kwargs: dict[str, Any], kernel_path: str | None = None):
    """The packed runtime of an in-memory model (binarizers set to exact sign first)."""
    model = copy.deepcopy(model).eval()
    set_temperature(model, 0.0)
    entries, _ = packed_entries(model)
    card = ModelCard.from_create_kwargs(name, kwargs, getattr(model, "num_classes", 1000))
    return build_packed_model(packed_header(model, entries, card), entries, kernel_path)


def median_seconds(calls: dict[str, Callable[[], Any]], reps: int, warmup: int = 2, block: int = 1) -> dict[str, float]:
    """Median wall time of each call, the calls interleaved rep by rep.

    With ``block > 1`` each turn runs one call ``block`` times in a row, the first untimed: thread
    pools spin for a while after a call and sleep after longer idling, so in one process a runtime
    timed right after another would pay for the other's spinning pool or for waking its own.
    """
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {key: [] for key in calls}
    for _ in range(max(1, reps // block)):
        for key, call in calls.items():
            if block > 1:
                call()
            for _ in range(block):
                start = time.perf_counter()
                call()
                times[key].append(time.perf_counter() - start)
    return {key: median(values) for key, values in times.items()}


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
class LayerInput:
    name: str
    shape: tuple[int, ...]
    op: PackedBinaryConv


def binary_layer_inputs(packed: PackedModel, images: torch.Tensor) -> list[LayerInput]:
    """Each packed binary conv with the shape of its input for ``images``."""
    found: list[LayerInput] = []
    hooks = []
    for name, module in packed.model.named_modules():
        if isinstance(module, PackedBinaryConv):
            hook = module.register_forward_pre_hook(
                lambda m, args, name=name: found.append(LayerInput(name, tuple(args[0].shape), m))
            )
            hooks.append(hook)
    with separate_kernel_calls(packed):
        packed(images)
    for hook in hooks:
        hook.remove()
    return found


def torch_conv_calls(x: torch.Tensor, signs: torch.Tensor, op: PackedBinaryConv) -> dict[str, Callable[[], Any]]:
    """The PyTorch fp32 baseline of one binary conv: ``F.conv2d`` of sign(x) and the +-1 ``signs``, in
    channels_last and in NCHW (the caller keeps the faster)."""
    x_sign = torch.sign(x).contiguous(memory_format=torch.channels_last)
    x_nchw, weight_cl = x_sign.contiguous(), signs.contiguous(memory_format=torch.channels_last)
    return {
        "torch_channels_last": lambda: F.conv2d(x_sign, weight_cl, stride=op.stride, padding=op.padding),
        "torch_nchw": lambda: F.conv2d(x_nchw, signs, stride=op.stride, padding=op.padding),
    }


def binary_conv_macs(in_shape: tuple[int, ...], op: PackedBinaryConv) -> int:
    """Binary multiply-accumulates of ``op`` on an input of ``in_shape`` (N, C, H, W)."""
    out_channels, channels, kh, kw = op.shape
    out_h = (in_shape[2] + 2 * op.padding - kh) // op.stride + 1
    out_w = (in_shape[3] + 2 * op.padding - kw) // op.stride + 1
    return in_shape[0] * out_h * out_w * out_channels * channels * kh * kw


def time_layer(layer: LayerInput, generator: torch.Generator, reps: int) -> dict[str, Any]:
    """One binary conv: its packed op vs torch fp32 conv2d of the same shape (channels_last and NCHW)."""
    op = layer.op
    x = torch.randn(layer.shape, generator=generator).contiguous(memory_format=torch.channels_last)
    signs = torch.sign(torch.randn(op.shape, generator=generator))
    with torch.inference_mode():
        seconds = median_seconds({**torch_conv_calls(x, signs, op), "packed": lambda: op(x)}, reps)
    out_channels, channels, kh, _ = op.shape
    macs = binary_conv_macs(layer.shape, op)
    best_torch = min(seconds["torch_channels_last"], seconds["torch_nchw"])
    return {
        "layer": layer.name,
        "kernel": kh,
        "stride": op.stride,
        "in_channels": channels,
        "out_channels": out_channels,
        "input_hw": list(layer.shape[2:]),
        "macs": macs,
        "torch_channels_last_ms": 1e3 * seconds["torch_channels_last"],
        "torch_nchw_ms": 1e3 * seconds["torch_nchw"],
        "packed_ms": 1e3 * seconds["packed"],
        "torch_fp32_gflops": 2 * macs / best_torch / 1e9,
        "packed_binary_gmacs": macs / seconds["packed"] / 1e9,
        "speedup_vs_channels_last": seconds["torch_channels_last"] / seconds["packed"],
        "speedup": best_torch / seconds["packed"],
    }


def bench_layers(packed: PackedModel, images: torch.Tensor, reps: int) -> list[dict[str, Any]]:
    """Every binary conv of ``packed`` timed by :func:`time_layer` at the input shapes ``images`` produce."""
    generator = torch.Generator().manual_seed(0)
    return [time_layer(layer, generator, reps) for layer in binary_layer_inputs(packed, images)]


def time_split(packed: PackedModel, images: torch.Tensor, reps: int) -> dict[str, float]:
    """Share of the packed model's time inside the binary convs (pack + GEMM + epilogue) vs the rest, measured
    with each unit's conv and tail called apart (hooks cannot see inside the one-call units)."""
    inside = [0.0]
    starts: dict[int, float] = {}
    hooks = []
    for module in packed.model.modules():
        if isinstance(module, PackedBinaryConv):
            hooks.append(module.register_forward_pre_hook(lambda m, a: starts.__setitem__(id(m), time.perf_counter())))
            hooks.append(
                module.register_forward_hook(
                    lambda m, a, o: inside.__setitem__(0, inside[0] + time.perf_counter() - starts[id(m)])
                )
            )
    with separate_kernel_calls(packed):  # the hooks time the convs apart from the unit tails
        packed(images)
        inside[0] = 0.0
        start = time.perf_counter()
        for _ in range(reps):
            packed(images)
        total = time.perf_counter() - start
    for hook in hooks:
        hook.remove()
    return {"binary_conv_share": inside[0] / total, "fp_ops_share": 1 - inside[0] / total}


def bench_end_to_end(float_model: nn.Module, packed: PackedModel, images: torch.Tensor, reps: int) -> dict[str, float]:
    """PyTorch fp32 eval (pre-binarized weights, channels_last) vs the packed runtime on ``images``."""
    channels_last = images.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        seconds = median_seconds({"torch": lambda: float_model(channels_last), "packed": lambda: packed(images)}, reps)
    return {
        "torch_fp32_ms": 1e3 * seconds["torch"],
        "packed_ms": 1e3 * seconds["packed"],
        "speedup": seconds["torch"] / seconds["packed"],
        **time_split(packed, images, max(3, reps // 2)),
    }


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
        lines.append(
            f"{row['batch']:>5} {row['threads']:>7} {row['torch_fp32_ms']:>9.2f} {row['packed_ms']:>9.2f} "
            f"{row['speedup']:>7.1f}x {100 * row['binary_conv_share']:>15.0f}%"
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
