"""`bnext --version` and `bnext doctor`: what a bug report needs, printed whatever is missing."""

import sys

import pytest

import bnext
from bnext.cli import main
from bnext.commands import doctor_cmd


def test_version_prints_the_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"bnext {bnext.__version__}\n"


def test_doctor_prints_every_section(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for title in doctor_cmd.SECTIONS:
        assert f"\n{title}\n" in f"\n{out}"
    for key in ("python", "torch", "bnext", "isa flags", "kernel path", "cuda", "fashion-mnist"):
        assert f"  {key} " in out, key
    assert bnext.__version__ in out and "  error " not in out


def test_doctor_without_the_runtime(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "bnext_runtime", None)  # import bnext_runtime raises ImportError
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "bnext_runtime  not installed: `pip install ./runtime`" in out
    assert "kernel path    torch-reference" in out


def test_a_section_that_fails_is_reported_and_the_others_printed(monkeypatch, capsys):
    def broken() -> list:
        raise RuntimeError("driver did not answer")

    monkeypatch.setitem(doctor_cmd.SECTIONS, "gpu", broken)
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "gpu\n  error  RuntimeError: driver did not answer" in out and "datasets" in out
