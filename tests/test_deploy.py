"""Packed 1-bit deployment: .bnx v2 export of every family, the C++ runtime against PyTorch eval (and against the
torch reference of the graph), damaged and crafted files, the runtime's Python API and CLI, the commands."""

import json
import warnings

import numpy as np
import pytest
import torch

from bnext import create_model
from bnext.card import ModelCard
from bnext.cli import main
from bnext.deploy import export_checkpoint, load
from bnext.deploy.export import packed_model
from bnext.deploy.fileformat import encode_bnx, parse_bnx
from bnext.deploy.packing import pack_codes, pack_signs, unpack_codes, unpack_signs
from bnext.deploy.reference import run_graph
from bnext.deploy.runtime import load_packed, supported_paths
from bnext.errors import UserError
from bnext.loading import model_from_checkpoint
from bnext.nn import set_temperature

bnext_runtime = pytest.importorskip("bnext_runtime", reason="the C++ runtime is not installed (pip install ./runtime)")

FAMILIES = ["bnext_tiny", "bnext18", "reactnet_a", "birealnet18", "real2binary18", "binarynet18"]
PTQ = "8/8-4/8-4/8-8/8"  # Table 7's I-S-E-O notation: 8-bit stem and classifier, 4-bit-weight gates
TOLERANCE = 1e-4  # of the largest logit magnitude


def close(logits: torch.Tensor, expected: torch.Tensor) -> bool:
    return bool((logits - expected).abs().max() <= TOLERANCE * expected.abs().max())


def quantized_checkpoint(checkpoint, folder):
    argv = ["quantize", "--checkpoint", str(checkpoint), "--config", PTQ, "--output", str(folder)]
    assert main(argv) == 0
    return folder / "quantized.pt"


@pytest.mark.parametrize("model_name", FAMILIES)
@pytest.mark.parametrize("ptq", [False, True], ids=["fp32-rest", "ptq"])
def test_runtime_equals_pytorch_eval_for_every_family(tmp_path, model_name, ptq, trained_checkpoint):
    """Logits of the C++ runtime equal the trained model's PyTorch eval (batch 1 and 3, square and not)."""
    checkpoint = trained_checkpoint(model_name)
    if ptq:
        checkpoint = quantized_checkpoint(checkpoint, tmp_path / "q")
    report = export_checkpoint(checkpoint, tmp_path / "model.bnx")
    assert report.not_binarized == 0 and report.binary_layers > 0
    model, _ = model_from_checkpoint(checkpoint)
    packed = load(report.path)
    assert packed.kernel_path == supported_paths()[-1]
    generator = torch.Generator().manual_seed(1)
    for shape in [(3, 3, 32, 32), (1, 3, 32, 32), (3, 3, 64, 32)]:
        images = torch.randn(shape, generator=generator)
        with torch.no_grad():
            expected = model.eval()(images)
        logits = packed(images)
        assert torch.equal(logits.argmax(1), expected.argmax(1)), shape
        assert close(logits, expected), (shape, float((logits - expected).abs().max() / expected.abs().max()))


@pytest.mark.parametrize(
    "model_name,kwargs",
    [
        ("bnext_tiny", {"recoupling": False}),
        ("bnext_tiny", {"elm_attention": False}),
        ("bnext18", {"recoupling": False}),
        ("bnext18", {"elm_attention": False}),
        ("bnext_small", {"width_multiplier": 0.5}),
    ],
)
def test_the_graph_of_every_unit_variant_equals_pytorch_eval(model_name, kwargs):
    """Every unit variant (Info-RCP and ELM-Attention on or off) as ops: the torch reference of the graph equals
    the model, and the runtime equals the reference (random weights: checked op for op, not only logits)."""
    kwargs = {"num_classes": 5, "width_multiplier": 0.25, "stem_stride": 2, **kwargs}
    model = create_model(model_name, **kwargs).eval()
    set_temperature(model, 0.0)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    header, arrays, _ = packed_model(model, ModelCard.from_create_kwargs(model_name, kwargs))
    with torch.no_grad():
        expected = model(images)
    reference = run_graph(header["graph"], arrays, images)
    assert close(reference, expected)
    assert close(load_packed(header, arrays)(images), reference)


def test_every_kernel_path_gives_the_same_logits_and_a_missing_one_is_refused(tmp_path, trained_checkpoint):
    path = export_checkpoint(trained_checkpoint("bnext_tiny"), tmp_path / "m.bnx").path
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    fastest = load(path)(images)
    for name in supported_paths():
        torch.testing.assert_close(load(path, kernel_path=name)(images), fastest, rtol=1e-5, atol=1e-5)
    with pytest.raises(UserError, match="unknown kernel path"):
        load(path, kernel_path="avx1024")
    lacking = [name for name in ["avx2", "avx512bw", "avx512"] if name not in supported_paths()]
    if lacking:  # none lacking on an AVX-512 VPOPCNTDQ CPU
        with pytest.raises(UserError, match=lacking[0]):
            load(path, kernel_path=lacking[0])


def test_threads_change_nothing_but_speed(tmp_path, trained_checkpoint):
    path = export_checkpoint(trained_checkpoint("bnext18"), tmp_path / "m.bnx").path
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    one, two = load(path, threads=1), load(path, threads=2)
    assert (one.native.threads, two.native.threads) == (1, 2)
    assert torch.equal(one(images), two(images))


def test_ptq_stores_integers_and_is_smaller(tmp_path, trained_checkpoint):
    checkpoint = trained_checkpoint("bnext_tiny")
    full = export_checkpoint(checkpoint, tmp_path / "fp.bnx")
    small = export_checkpoint(quantized_checkpoint(checkpoint, tmp_path / "q"), tmp_path / "q.bnx")
    assert small.bytes < full.bytes
    header, arrays = parse_bnx(small.path.read_bytes())
    stem = next(op for op in header["graph"]["ops"] if op["op"] == "conv2d")
    assert stem["attrs"]["weight_bits"] == 8 and arrays[stem["params"]["codes"]].dtype == np.uint8
    assert stem["attrs"]["input_quant"]["bits"] == 8


def test_the_file_describes_its_graph_without_model_code(tmp_path, trained_checkpoint):
    """The runtime needs only the file: its header lists ops with named inputs, params and attrs."""
    path = export_checkpoint(trained_checkpoint("bnext_tiny"), tmp_path / "m.bnx").path
    header, arrays = parse_bnx(path.read_bytes())
    graph = header["graph"]
    kinds = {op["op"] for op in graph["ops"]}
    assert {"conv2d", "binary_conv", "unit_tail", "concat", "prelu", "global_avg_pool", "linear"} <= kinds
    assert graph["input"] == {"name": "input", "channels": 3, "height": 32, "width": 32, "multiple": 32}
    assert all(name in arrays for op in graph["ops"] for name in op["params"].values())


def test_damaged_foreign_and_old_files_are_refused(tmp_path, trained_checkpoint):
    checkpoint = trained_checkpoint("bnext_tiny")
    good = export_checkpoint(checkpoint, tmp_path / "m.bnx").path
    raw = good.read_bytes()
    cases = {
        "truncated.bnx": (raw[: len(raw) // 2], "damaged or truncated"),
        "flipped.bnx": (raw[:200] + bytes([raw[200] ^ 1]) + raw[201:], "checksum mismatch"),
        "foreign.bnx": (checkpoint.read_bytes(), "not a bnext packed model"),
        "newer.bnx": (raw[:8] + (99).to_bytes(4, "little") + raw[12:], "version 99"),
        "v1.bnx": (raw[:8] + (1).to_bytes(4, "little") + raw[12:], "bnext export CHECKPOINT"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UserError, match=message):
            load(tmp_path / name)
        with pytest.raises(bnext_runtime.ModelError, match=message.split()[-1]):
            bnext_runtime.load(data)
    with pytest.raises(UserError, match="not found"):
        load(tmp_path / "missing.bnx")


def crafted(header, arrays, edit):
    """The file bytes after ``edit(graph, arrays)`` changed a valid graph (checksum recomputed)."""
    header = json.loads(json.dumps(header))
    arrays = dict(arrays)
    edit(header["graph"], arrays)
    return encode_bnx(header, arrays)


def first(graph, kind):
    return next(op for op in graph["ops"] if op["op"] == kind)


def shorten(arrays, op, role):
    arrays[op["params"][role]] = arrays[op["params"][role]][:1]


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda g, a: first(g, "binary_conv")["attrs"].update(stride=0), "stride"),
        (lambda g, a: first(g, "binary_conv")["attrs"].update(out_channels=2**23), "out_channels"),
        (lambda g, a: shorten(a, first(g, "binary_conv"), "scale"), "scale"),
        (lambda g, a: first(g, "binary_conv")["attrs"].update(kernel=5), "bits"),
        (lambda g, a: first(g, "conv2d")["attrs"].pop("stride"), "stride"),
        (lambda g, a: first(g, "unit_tail")["params"].pop("norm_scale"), "norm_scale"),
        (lambda g, a: first(g, "linear")["inputs"].update(x="nowhere"), "nowhere"),
        (lambda g, a: g["ops"][0].update(op="softmax"), "unknown op kind"),
        (lambda g, a: g["ops"].reverse(), "no earlier op"),
        (lambda g, a: g.update(classes=7), "classes"),
        (lambda g, a: g["input"].update(multiple=0), "multiple"),
    ],
    ids=["stride-0", "2^23-channels", "short-scale", "3x3-as-5x5", "no-stride", "no-norm", "dangling", "kind", "order",
         "classes", "multiple"],
)  # fmt: skip
def test_crafted_graphs_are_refused_with_the_field_named(edit, message):
    model = create_model("bnext_tiny", num_classes=4, width_multiplier=0.25).eval()
    set_temperature(model, 0.0)
    header, arrays, _ = packed_model(model, ModelCard("bnext_tiny", 4, {"width_multiplier": 0.25}))
    with pytest.raises(bnext_runtime.ModelError, match=message):
        bnext_runtime.load(crafted(header, arrays, edit))


def test_bad_images_get_clear_errors_or_documented_results(tmp_path, trained_checkpoint):
    packed = load(export_checkpoint(trained_checkpoint("bnext_tiny"), tmp_path / "m.bnx").path)
    images = torch.randn(2, 3, 32, 32)
    assert packed(images[:0]).shape == (0, 4)  # an empty batch: empty logits on every path
    for path in supported_paths():
        assert load(tmp_path / "m.bnx", kernel_path=path)(images[:0]).shape == (0, 4)
    with pytest.raises(UserError, match="uint8"):
        packed((images * 50).to(torch.uint8))
    with pytest.raises(UserError, match="3-channel"):
        packed(torch.randn(1, 1, 32, 32))
    with pytest.raises(UserError, match="multiples of 32"):
        packed(torch.randn(1, 3, 8, 8))
    with pytest.raises(UserError, match="4-D"):
        packed(torch.randn(3, 32, 32))
    nan = images.clone()
    nan[1, 0, 5, 5] = float("nan")
    logits = packed(nan)
    assert torch.isnan(logits[1]).all() and not torch.isnan(logits[0]).any()  # only its own image


def test_export_refuses_to_overwrite_its_input_or_a_directory(tmp_path, trained_checkpoint):
    checkpoint = tmp_path / "ckpt.pt"
    checkpoint.write_bytes(trained_checkpoint("bnext_tiny").read_bytes())
    with pytest.raises(UserError, match="is the input"):
        export_checkpoint(checkpoint, checkpoint)
    with pytest.raises(UserError, match="directory"):
        export_checkpoint(checkpoint, tmp_path)
    assert checkpoint.read_bytes() == trained_checkpoint("bnext_tiny").read_bytes()


def test_without_the_runtime_the_torch_reference_runs_the_file(tmp_path, monkeypatch, trained_checkpoint):
    path = export_checkpoint(trained_checkpoint("bnext_tiny"), tmp_path / "m.bnx").path
    images = torch.randn(2, 3, 32, 32)
    fast = load(path)(images)
    monkeypatch.setattr("bnext.deploy.runtime.native_runtime", lambda: None)
    with pytest.warns(RuntimeWarning, match="not installed"):
        slow = load(path)
    assert slow.kernel_path == "torch-reference"
    torch.testing.assert_close(slow(images), fast, rtol=1e-4, atol=1e-4)


def test_runtime_python_api_and_cli(tmp_path, capsys, trained_checkpoint):
    """bnext_runtime alone: load from a path or bytes, the card, shapes, threads, top-5 from .npy and PNG files."""
    from bnext_runtime.cli import main as run_main
    from PIL import Image

    path = export_checkpoint(trained_checkpoint("bnext_tiny"), tmp_path / "m.bnx").path
    model = bnext_runtime.load(path, threads=2)
    same = bnext_runtime.load(path.read_bytes())
    assert model.input_shape == (3, 32, 32) and model.num_classes == 4 and model.threads == 2
    assert model.kernel_path in bnext_runtime.supported_kernel_paths()
    assert model.card["model"] == "bnext_tiny" and len(model.card["mean"]) == 3
    images = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    np.testing.assert_array_equal(model(images), same(images))
    header, _ = parse_bnx(path.read_bytes())
    profile = model.profile(images)
    assert [(name, kind) for name, kind, _ in profile] == [(op["name"], op["op"]) for op in header["graph"]["ops"]]
    assert all(seconds >= 0 for _, _, seconds in profile)
    np.save(tmp_path / "a.npy", np.full((3, 32, 32), 0.5, dtype=np.float32))
    Image.fromarray(np.zeros((40, 50, 3), dtype=np.uint8)).save(tmp_path / "b.png")
    assert run_main([str(path), str(tmp_path / "a.npy"), str(tmp_path / "b.png"), "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith(str(tmp_path / "a.npy")) and lines[0].count(",") == 1
    assert run_main([str(path), str(tmp_path / "missing.png")]) == 2


def test_bit_packing_round_trips():
    weight = torch.randn(5, 70, 3, 3)
    packed = pack_signs(weight)
    assert packed.shape == (5, 9, 12)  # 70 channels -> 3 words of 32 bits -> 12 bytes per tap
    assert torch.equal(unpack_signs(packed, tuple(weight.shape)), torch.where(weight < 0, -1.0, 1.0))
    codes = torch.randint(0, 16, (7, 9))
    stored = pack_codes(codes, 4)
    assert stored.nbytes == codes.numel() // 2 + 1
    assert torch.equal(unpack_codes(stored, 4, tuple(codes.shape)), codes.float())


def test_full_bnext_tiny_packs_under_the_size_targets():
    model = create_model("bnext_tiny").eval()
    set_temperature(model, 0.0)
    fp32_bytes = sum(t.numel() * 4 for t in model.state_dict().values())
    _, arrays, _ = packed_model(model, ModelCard("bnext_tiny", 1000))
    stored = sum(a.nbytes for a in arrays.values())
    assert stored <= 14 * 2**20 < fp32_bytes / 8  # 1-bit binary weights, fp32 rest


def test_export_and_bench_commands(tmp_path, capsys, trained_checkpoint):
    checkpoint = trained_checkpoint("bnext_tiny")
    assert main(["export", str(checkpoint), "--output", str(tmp_path / "m.bnx")]) == 0
    assert "smaller" in capsys.readouterr().out
    argv = ["bench", "--checkpoint", str(checkpoint), "--input-size", "32", "--reps", "1", "--json"]
    assert main([*argv, "--batch", "1", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [row["batch"] for row in result["end_to_end"]] == [1, 2]
    layers = result["layers"]["threads_1"]
    header, _ = parse_bnx((tmp_path / "m.bnx").read_bytes())
    assert len(layers) == sum(op["op"] == "binary_conv" for op in header["graph"]["ops"])
    assert all(np.isfinite(row["speedup"]) for row in layers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["export", str(tmp_path / "nothing.pt"), "--output", str(tmp_path / "x.bnx")]) == 2
