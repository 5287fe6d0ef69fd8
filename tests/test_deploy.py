"""Packed 1-bit deployment: kernels vs a float conv of signs, export/load round trips, damaged files, CLI."""

import itertools
import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bnext import create_model
from bnext.checkpoint import read_checkpoint
from bnext.cli import main
from bnext.deploy import export_checkpoint, kernels, load
from bnext.deploy.export import packed_entries
from bnext.deploy.fused_unit import FusedBlock, FusedUnit, separate_kernel_calls
from bnext.deploy.packing import (
    border_sums,
    kernel_panels,
    pack_codes,
    pack_signs,
    pad_channels,
    unpack_codes,
    unpack_signs,
)
from bnext.errors import UserError
from bnext.loading import model_from_checkpoint
from bnext.models.bnext import Stem
from bnext.nn.folding import conv_with_batchnorm

PATHS = ["portable", "avx2", "avx512bw", "avx512"]
# Every path natively where the CPU has it, and the SIMD paths again in the emulated build (SIMDe), so that
# the AVX-512 code is checked on CPUs without AVX-512 too.
KERNEL_CASES = [pytest.param("native", p, id=p) for p in PATHS] + [
    pytest.param("emulated", p, id=f"emulated-{p}") for p in PATHS[1:]
]


def kernel_module(build, path):
    if build == "emulated":
        ext = kernels.emulated_extension()
        if ext is None:
            pytest.skip(f"SIMDe headers ({kernels.SIMDE_HEADER}; Debian: libsimde-dev) absent: no emulated build")
        return ext
    ext = kernels.extension()
    if ext is None:
        pytest.skip("the C++ kernels could not be built here (no compiler): only the torch fallback is tested")
    if path not in kernels.supported_paths():
        pytest.skip(f"this CPU lacks the {path} instructions; that path runs here only in the emulated build")
    return ext


def random_layer(generator):
    """A random binary conv problem: channels not multiples of 64, odd sizes, stride 1/2, 1x1/3x3, batch 1..8."""
    n = int(torch.randint(1, 9, (1,), generator=generator))
    c = int(torch.randint(1, 150, (1,), generator=generator))
    o = int(torch.randint(1, 100, (1,), generator=generator))
    h, w = (int(v) * 2 + 1 for v in torch.randint(1, 7, (2,), generator=generator))
    k = [1, 3][int(torch.randint(0, 2, (1,), generator=generator))]
    s = int(torch.randint(1, 3, (1,), generator=generator))
    x = torch.randn(n, c, h, w, generator=generator)
    x[x.abs() < 0.2] = 0.0  # exact zeros: sign(0) is stored as +1 by the kernels
    return x, torch.randn(c, generator=generator) * 0.1, torch.randn(o, c, k, k, generator=generator), s, k // 2


def plus_minus(t):
    return torch.where(t < 0, -1.0, 1.0)


def long_k_layers(generator):
    """Deep layers whose K spans many 64-bit words (3x3 over 520 channels: 73 words; 1x1 over 1100: 18, and
    over 2100: 33), past the AVX2 kernel's 31-step byte accumulation (its k blocks), with output channels not
    a multiple of 8; and a 3x3 layer (144 words x 288 channels, 324 KiB) and a 1x1 layer (33 words x 1024
    channels, 264 KiB) whose packed weights exceed the AVX2 kernel's limit for runs of pixels
    (kRowRunWeightBytes, 256 KiB), so the image-wide im2col buffer, and for the 1x1 the per-call split of its
    packed pixels, are used."""
    for c, o, k in [(520, 37, 3), (1100, 45, 1), (2100, 19, 1), (1024, 283, 3), (2100, 1001, 1)]:
        x = torch.randn(2, c, 5, 6, generator=generator)
        yield x, torch.randn(c, generator=generator) * 0.1, torch.randn(o, c, k, k, generator=generator), 1, k // 2


@pytest.mark.parametrize(("build", "path"), KERNEL_CASES)
def test_kernel_integer_output_equals_float_conv_of_signs(build, path):
    ext = kernel_module(build, path)
    code = kernels.path_code(path)
    generator = torch.Generator().manual_seed(PATHS.index(path))
    layers = [random_layer(generator) for _ in range(25)] + list(long_k_layers(generator))
    for x, shift, weight, stride, padding in layers:
        o, c, k, _ = weight.shape
        packed_weight = pack_signs(weight)
        packed = ext.pack_activations(x, shift, code)
        ones, zeros = pad_channels(torch.ones(o)), pad_channels(torch.zeros(o))
        weights = ext.kernel_weights(kernel_panels(packed_weight), code)
        args = (weights, border_sums(packed_weight, c), c, o, k, k, stride, padding, ones, zeros)
        out = ext.binary_conv(packed, *args, None, code)
        reference = F.conv2d(
            plus_minus(x + shift.view(1, -1, 1, 1)), plus_minus(weight), stride=stride, padding=padding
        )
        assert torch.equal(out, reference), (tuple(x.shape), tuple(weight.shape), stride)


@pytest.mark.parametrize("build", ["native", "emulated"])
def test_weights_in_another_paths_layout_are_refused(build):
    ext = kernel_module(build, "avx2")
    code = kernels.path_code("avx2")
    weight = pack_signs(torch.randn(40, 96, 1, 1))
    x = ext.pack_activations(torch.randn(1, 96, 4, 4), torch.zeros(96), code)
    args = (border_sums(weight, 96), 96, 40, 1, 1, 1, 0, pad_channels(torch.ones(40)), pad_channels(torch.zeros(40)))
    with pytest.raises(RuntimeError, match="pass the panels through kernel_weights"):
        ext.binary_conv(x, kernel_panels(weight), *args, None, code)  # the AVX2 kernel reads nibble planes
    out = ext.binary_conv(x, ext.kernel_weights(kernel_panels(weight), code), *args, None, code)
    assert out.shape == (1, 40, 4, 4)


@pytest.mark.parametrize(("build", "path"), KERNEL_CASES)
def test_activation_packing_sets_the_bits_of_negative_values(build, path):
    ext = kernel_module(build, path)
    generator = torch.Generator().manual_seed(11)
    for channels in (1, 7, 8, 9, 63, 64, 65, 130):
        x = torch.randn(2, channels, 3, 5, generator=generator)
        x[x.abs() < 0.3] = 0.0
        x[0, 0, 0, 0] = -0.0  # not negative: +1
        shift = torch.randn(channels, generator=generator) * 0.1
        shift[::3] = 0.0
        words = ext.pack_activations(x, shift, kernels.path_code(path))  # (N, H, W, ceil(C / 64)) int64
        negative = (x + shift.view(1, -1, 1, 1) < 0).permute(0, 2, 3, 1)
        bits = (words[..., None] >> torch.arange(64)) & 1  # (N, H, W, words, 64)
        assert torch.equal(bits.flatten(-2)[..., :channels].bool(), negative), channels
        assert not bits.flatten(-2)[..., channels:].any()  # padding bits stay clear


@pytest.mark.parametrize(("build", "path"), KERNEL_CASES)
def test_kernel_epilogue_matches_the_reference_path(build, path):
    ext = kernel_module(build, path)
    generator = torch.Generator().manual_seed(7)
    x, shift, weight, _, _ = random_layer(generator)
    o, c, k, _ = weight.shape
    scale, bias, slope = torch.randn(o, generator=generator), torch.randn(o, generator=generator), torch.rand(o)
    packed_weight = pack_signs(weight)
    weights = ext.kernel_weights(kernel_panels(packed_weight), kernels.path_code(path))
    out = ext.binary_conv(
        ext.pack_activations(x, shift, kernels.path_code(path)),
        weights, border_sums(packed_weight, c), c, o, k, k, 2, k // 2,
        pad_channels(scale), pad_channels(bias), pad_channels(slope), kernels.path_code(path),
    )  # fmt: skip
    expected = kernels.reference_binary_conv(x, shift, plus_minus(weight), 2, k // 2, scale, bias, slope)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-4)


def test_conv_with_batchnorm_equals_the_two_ops():
    generator = torch.Generator().manual_seed(4)
    for bias in (False, True):
        conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=bias)
        norm = torch.nn.BatchNorm2d(8).eval()
        with torch.no_grad():
            norm.running_mean.normal_(generator=generator)
            norm.running_var.uniform_(0.5, 2.0, generator=generator)
            norm.weight.normal_(generator=generator)
            norm.bias.normal_(generator=generator)
        x = torch.randn(2, 3, 9, 10, generator=generator)
        with torch.no_grad():
            torch.testing.assert_close(conv_with_batchnorm(conv, norm)(x), norm(conv(x)), rtol=1e-5, atol=1e-5)


def test_bit_packing_round_trips():
    weight = torch.randn(5, 70, 3, 3)
    packed = pack_signs(weight)
    assert packed.shape == (5, 9, 12)  # 70 channels -> 3 words of 32 bits -> 12 bytes per tap
    assert torch.equal(unpack_signs(packed, tuple(weight.shape)), plus_minus(weight))
    codes = torch.randint(0, 16, (7, 3, 3, 3))
    stored = pack_codes(codes, 4)
    assert stored.nbytes == codes.numel() // 2 + 1
    assert torch.equal(unpack_codes(stored, 4, tuple(codes.shape)), codes.float())


@pytest.mark.parametrize("model_name", ["bnext_tiny", "bnext18"])
def test_packed_runtime_matches_pytorch_eval(tmp_path, model_name, trained_checkpoint):
    checkpoint = trained_checkpoint(model_name)
    report = export_checkpoint(checkpoint, tmp_path / "model.bnx")
    assert report.not_binarized == 0 and report.bytes < report.checkpoint_bytes
    model, _ = model_from_checkpoint(checkpoint)
    packed = load(report.path)
    images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model.eval()(images)
    logits = packed(images)
    stems = [m for m in packed.modules() if isinstance(m, Stem)]
    assert all(isinstance(stem.bn1, torch.nn.Identity) for stem in stems)  # folded into the stem conv
    assert torch.equal(logits.argmax(1), expected.argmax(1))
    assert (logits - expected).abs().max() <= 1e-3 * expected.abs().max()
    assert packed(images[:1]).shape == (1, 4)  # any batch size


def test_every_kernel_path_gives_the_same_logits_and_a_missing_one_is_refused(tmp_path, trained_checkpoint):
    kernel_module("native", "portable")
    path = export_checkpoint(trained_checkpoint("bnext_tiny"), tmp_path / "m.bnx").path
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    fastest = load(path)(images)
    for name in kernels.supported_paths():
        torch.testing.assert_close(load(path, kernel_path=name)(images), fastest, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unknown kernel path 'avx1024'"):
        load(path, kernel_path="avx1024")
    lacking = [name for name in PATHS if name not in kernels.supported_paths()]
    if lacking:  # none lacking on an AVX-512 VPOPCNTDQ CPU
        with pytest.raises(ValueError, match=f"cannot run the '{lacking[0]}' kernels; it runs portable"):
            load(path, kernel_path=lacking[0])


def test_ptq_checkpoint_exports_integers_and_runs(tmp_path, capsys, trained_checkpoint):
    checkpoint = trained_checkpoint("bnext_tiny")
    argv = ["quantize", "--checkpoint", str(checkpoint), "--config", "8/8-4/4-4/4-8/8", "--output", str(tmp_path / "q")]
    assert main(argv) == 0
    quantized = tmp_path / "q" / "quantized.pt"
    full = export_checkpoint(checkpoint, tmp_path / "fp.bnx")
    small = export_checkpoint(quantized, tmp_path / "q.bnx")
    assert small.bytes < full.bytes
    model, _ = model_from_checkpoint(quantized)
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model.eval()(images)
    logits = load(small.path)(images)
    assert (logits - expected).abs().max() <= 1e-3 * expected.abs().max()


def test_full_bnext_tiny_packs_under_the_size_targets():
    model = create_model("bnext_tiny").eval()
    fp32_bytes = sum(t.numel() * 4 for t in model.state_dict().values())
    stored = sum(e.array.nbytes for e in packed_entries(model)[0].values())
    assert stored <= 14 * 2**20 < fp32_bytes / 8  # 1-bit binary weights, fp32 rest


def test_damaged_or_foreign_files_are_refused(tmp_path, trained_checkpoint):
    checkpoint = trained_checkpoint("bnext_tiny")
    good = export_checkpoint(checkpoint, tmp_path / "m.bnx").path
    raw = good.read_bytes()
    cases = {
        "truncated.bnx": (raw[: len(raw) // 2], "damaged or truncated"),
        "flipped.bnx": (raw[:200] + bytes([raw[200] ^ 1]) + raw[201:], "checksum mismatch"),
        "foreign.bnx": (checkpoint.read_bytes(), "not a bnext packed model"),
        "newer.bnx": (raw[:8] + (99).to_bytes(4, "little") + raw[12:], "format version 99"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UserError, match=message):
            load(tmp_path / name)
    with pytest.raises(UserError, match="not found"):
        load(tmp_path / "missing.bnx")


def test_baseline_models_are_refused_clearly():
    with pytest.raises(UserError, match="export supports the BNext family and bnext18"):
        packed_entries(create_model("birealnet18", num_classes=4, width_multiplier=0.25))


def test_fallback_without_compiler_warns_and_agrees(tmp_path, monkeypatch, trained_checkpoint):
    checkpoint = trained_checkpoint("bnext_tiny")
    packed = load(export_checkpoint(checkpoint, tmp_path / "m.bnx").path)
    images = torch.randn(2, 3, 32, 32)
    fast = packed(images)

    def no_compiler(**kwargs):
        raise RuntimeError("g++: command not found")

    monkeypatch.setattr("torch.utils.cpp_extension.load", no_compiler)
    kernels.extension.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="torch reference path"):
            assert kernels.extension() is None
        torch.testing.assert_close(packed(images), fast, rtol=1e-4, atol=1e-4)
    finally:
        kernels.extension.cache_clear()


def test_export_and_bench_commands(tmp_path, capsys, trained_checkpoint):
    checkpoint = trained_checkpoint("bnext_tiny")
    assert main(["export", str(checkpoint), "--output", str(tmp_path / "m.bnx")]) == 0
    assert "smaller" in capsys.readouterr().out
    argv = ["bench", "--checkpoint", str(checkpoint), "--input-size", "32", "--reps", "1", "--json"]
    assert main([*argv, "--batch", "1", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [row["batch"] for row in result["end_to_end"]] == [1, 2]
    layers = result["layers"]["threads_1"]
    assert len(layers) == sum(1 for key in read_checkpoint(checkpoint)["model"] if key.endswith("binary_conv.weight"))
    assert all(np.isfinite(row["speedup"]) for row in layers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["export", str(tmp_path / "nothing.pt"), "--output", str(tmp_path / "x.bnx")]) == 2


@pytest.mark.parametrize(
    "model_name,kwargs",
    [
        ("bnext_tiny", {"recoupling": False}),
        ("bnext_tiny", {"elm_attention": False}),
        ("bnext18", {"recoupling": False}),
    ],
)
def test_packed_runtime_matches_module_ablations(model_name, kwargs):
    """Every unit variant (Info-RCP and ELM-Attention on or off) regrouped by the runtime equals PyTorch eval."""
    from bnext.deploy.bench import packed_from_model
    from bnext.nn import set_temperature

    kwargs = {"num_classes": 5, "width_multiplier": 0.25, "stem_stride": 2, **kwargs}
    model = create_model(model_name, **kwargs).eval()
    set_temperature(model, 0.0)
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(images)
    logits = packed_from_model(model, model_name, kwargs)(images)
    assert (logits - expected).abs().max() <= 1e-3 * expected.abs().max()


@pytest.mark.parametrize("model_name", ["bnext_tiny", "bnext18"])
def test_native_unit_tail_matches_the_torch_ops(tmp_path, model_name, trained_checkpoint):
    """bitkernels' unit_tail (shortcut, gate, BN2, ELM product, residual in one call) against the same tail in
    torch ops, for every unit kind of the model: plain and ELM-Attention, stride 1 and 2, batch 3, non-square
    maps, odd sizes at stride 1."""
    kernel_module("native", "portable")
    packed = load(export_checkpoint(trained_checkpoint(model_name), tmp_path / "m.bnx").path)
    units = [m for m in packed.modules() if isinstance(m, FusedUnit)]
    assert units and all(unit.native_gate is not None for unit in units)
    generator = torch.Generator().manual_seed(5)
    with torch.inference_mode():
        for unit, size in itertools.product(units, [(6, 10), (7, 9)]):
            if unit.conv.stride == 2 and size == (7, 9):
                continue  # a stride-2 conv gives 4x5 there, its shortcut's 2x2 pool 3x4: no such model input
            x = torch.randn(3, unit.conv.shape[1], *size, generator=generator)
            x = x.contiguous(memory_format=torch.channels_last)
            assert unit.native(x)
            native = unit(x)
            gate, unit.native_gate = unit.native_gate, None
            expected = unit(x)
            unit.native_gate = gate
            torch.testing.assert_close(native, expected, rtol=1e-5, atol=1e-5)
    kinds = {(unit.elm_attention, unit.recoupling) for unit in units}
    assert kinds == {(False, True), (True, True)}, kinds  # plain and ELM-Attention units, both with Info-RCP
    # Which shortcuts unit_tail computes itself: BNext's identity and 2x2 pools, not BNext-18's fp downsample.
    shortcuts = {(type(u.shortcut).__name__, u.native_shortcut is not None) for u in units}
    expected_kinds = {"bnext_tiny": {("Identity", True), ("AvgPool2d", True)}, "bnext18": {("Identity", True)}}
    assert shortcuts - {("Sequential", False)} == expected_kinds[model_name], shortcuts


@pytest.mark.parametrize("model_name", ["bnext_tiny", "bnext18"])
def test_one_call_units_equal_their_separate_kernel_calls(tmp_path, model_name, trained_checkpoint):
    """The C++ PackedUnit (pack, conv, tail in one call) gives exactly what the conv module and the tail give
    when called apart; BNext-18's downsampling units, whose fp shortcut torch computes, keep the calls apart."""
    kernel_module("native", "portable")
    packed = load(export_checkpoint(trained_checkpoint(model_name), tmp_path / "m.bnx").path)
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    one_call = packed(images)
    with separate_kernel_calls(packed):
        apart = packed(images)
    assert torch.equal(one_call, apart)
    units = [m for m in packed.modules() if isinstance(m, FusedUnit)]
    kinds = {(type(unit.shortcut).__name__, unit.runs_in_one_call) for unit in units}
    expected = {
        "bnext_tiny": {("Identity", True), ("AvgPool2d", True)},
        "bnext18": {("Identity", True), ("Sequential", False)},
    }
    assert kinds == expected[model_name]


def test_fused_blocks_write_the_concatenation_in_place(tmp_path, trained_checkpoint):
    """A channel-doubling BNext block's FFN units write their halves of the output: equal to torch.cat."""
    kernel_module("native", "portable")
    packed = load(export_checkpoint(trained_checkpoint("bnext_tiny"), tmp_path / "m.bnx").path)
    blocks = [m for m in packed.modules() if isinstance(m, FusedBlock) and len(m.ffn) > 1]
    assert blocks
    generator = torch.Generator().manual_seed(6)
    with torch.inference_mode():
        for block in blocks:
            x = torch.randn(2, block.mixer.conv.shape[1], 6, 10, generator=generator)
            x = x.contiguous(memory_format=torch.channels_last)
            mixed = block.mixer(x)
            expected = torch.cat([unit(mixed) for unit in block.ffn], dim=1)
            out = block(x)
            assert out.is_contiguous(memory_format=torch.channels_last)
            assert torch.equal(out, expected)
