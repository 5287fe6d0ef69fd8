"""Autocast dtype choice with the CPU's and GPU's capabilities mocked both ways."""

import pytest
import torch

from bnext import hardware
from bnext.errors import UserError

AVX2_ONLY = frozenset({"sse4_2", "avx", "avx2", "fma"})
WITH_BF16 = AVX2_ONLY | {"avx512f", "avx512bw", "avx512_bf16"}
WITH_AMX = AVX2_ONLY | {"amx_tile", "amx_bf16"}


@pytest.fixture
def cpu(monkeypatch):
    def set_flags(flags):
        monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)

    return set_flags


@pytest.fixture
def gpu(monkeypatch):
    def set_bf16(supported):
        monkeypatch.setattr(hardware, "cuda_has_bf16", lambda: supported)

    return set_bf16


def test_cpu_without_native_bf16_stays_fp32(cpu):
    cpu(AVX2_ONLY)
    assert not hardware.cpu_has_native_bf16()
    assert hardware.native_autocast_dtype("cpu") is None
    assert hardware.choose_autocast(True, "auto", "cpu") is None  # amp asked for, but bf16 would be emulated
    assert hardware.choose_autocast("auto", "auto", "cpu") is None


@pytest.mark.parametrize("flags", [WITH_BF16, WITH_AMX], ids=["avx512_bf16", "amx"])
def test_cpu_with_native_bf16_uses_it_when_asked(cpu, flags):
    cpu(flags)
    assert hardware.cpu_has_native_bf16()
    assert hardware.choose_autocast(True, "auto", "cpu") is torch.bfloat16
    assert hardware.choose_autocast("auto", "auto", "cpu") is None  # on CPU autocast is opt-in


@pytest.mark.parametrize(("bf16", "expected"), [(True, torch.bfloat16), (False, torch.float16)])
def test_cuda_amp_is_on_by_default_with_the_native_dtype(gpu, bf16, expected):
    gpu(bf16)
    assert hardware.choose_autocast("auto", "auto", "cuda") is expected
    assert hardware.choose_autocast(False, "auto", "cuda") is None  # the authors' fp32 recipe


def test_forced_dtype_and_bad_values(cpu):
    cpu(AVX2_ONLY)
    assert hardware.choose_autocast(True, "bf16", "cpu") is torch.bfloat16
    assert hardware.choose_autocast(True, "fp16", "cuda") is torch.float16
    with pytest.raises(UserError, match="amp_dtype"):
        hardware.choose_autocast(True, "int8", "cpu")
    with pytest.raises(UserError, match="train.amp"):
        hardware.choose_autocast("sometimes", "auto", "cpu")


def test_teacher_runs_fp32_on_a_cpu_without_bf16(cpu):
    from bnext.distill.teachers import Teacher
    from bnext.models import create_model

    model = create_model("resnet18_fp", num_classes=10, stem_stride=1, width_multiplier=0.125)
    teacher = Teacher("t", model, (0.5,) * 3, (0.25,) * 3)
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        reference = model(images)
    cpu(AVX2_ONLY)
    assert torch.equal(teacher.logits(images, (0.5,) * 3, (0.25,) * 3, amp=True), reference)
    cpu(WITH_BF16)
    bf16 = teacher.logits(images, (0.5,) * 3, (0.25,) * 3, amp=True)
    assert not torch.equal(bf16, reference)  # really ran in bf16 ...
    torch.testing.assert_close(bf16, reference, rtol=0.1, atol=0.1)  # ... and stays close


def test_trainer_follows_the_rule(cpu, tmp_path):
    from bnext.train import Trainer
    from tests.helpers import tiny_config

    cpu(AVX2_ONLY)
    trainer = Trainer(tiny_config(tmp_path, amp=True))
    assert trainer.amp_dtype is None and not trainer.scaler.is_enabled()
    cpu(WITH_BF16)
    assert Trainer(tiny_config(tmp_path, amp=True)).amp_dtype is torch.bfloat16


def test_isa_summary_names_the_tracked_flags(cpu):
    cpu(WITH_BF16)
    summary = hardware.isa_summary()
    assert set(summary) == set(hardware.ISA_FLAGS)
    assert summary["avx2"] and summary["avx512_bf16"] and not summary["avx512_vpopcntdq"]
    assert isinstance(hardware.cpu_model(), str) and hardware.cpu_model()
