"""The `bnext` command line: help, train -> eval round trip, and bad input as clear errors."""

import json

import pytest

from bnext.cli import COMMANDS, main

TINY = [
    "--model",
    "bnext_tiny",
    "--set",
    "model.kwargs.width_multiplier=0.25",
    "--dataset",
    "synthetic",
    "--set",
    "data.synthetic_size=64",
    "--set",
    "data.synthetic_classes=4",
    "--batch-size",
    "16",
    "--set",
    "train.threads=1",
]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: bnext" in capsys.readouterr().out


def test_train_then_eval(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "checkpoint:" in printed and str(out / "last.pt") in printed
    assert main(["eval", "--checkpoint", str(out / "last.pt"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert result["top1"] == pytest.approx(record["val_top1"]) and result["count"] == 16


def test_resume_flag_continues_a_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--output", str(out)]) == 0
    assert main(["train", *TINY, "--epochs", "2", "--output", str(out), "--resume", str(out / "last.pt")]) == 0
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--dataset", "folder", "--data-dir", "/nonexistent/images"], "does not exist"),
        (["train", "--model", "bnext_huge", "--dataset", "synthetic"], "unknown model 'bnext_huge'"),
        (["train", "--set", "train.lrr=1"], "unknown config key 'train.lrr'"),
        (["train", "--config", "/nonexistent.yaml"], "config /nonexistent.yaml is neither a file nor a shipped recipe"),
        (["eval", "--checkpoint", "/nonexistent.pt"], "no checkpoint file at /nonexistent.pt"),
    ],
)
def test_bad_input_is_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_eval_refuses_a_dataset_with_another_class_count(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--output", str(out)]) == 0
    assert main(["eval", "--checkpoint", str(out / "last.pt"), "--set", "data.synthetic_classes=7"]) == 2
    assert "has 7 classes but 4 are needed" in capsys.readouterr().err


def test_quantize_then_eval_and_profile_the_quantized_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--output", str(out)]) == 0
    assert (
        main(
            [
                "quantize",
                "--checkpoint",
                str(out / "last.pt"),
                "--config",
                "8/8-4/8-4/8-8/8",
                "--calibration-batches",
                "2",
                "--finetune-epochs",
                "1",
                "--output",
                str(tmp_path / "q"),
                "--json",
            ]
        )
        == 0
    )
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])[0]
    assert main(["eval", "--checkpoint", row["checkpoint"], "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["top1"] == pytest.approx(row["top1"])
    assert main(["profile", row["checkpoint"], "--input-size", "64", "--json"]) == 0
    cost = json.loads(capsys.readouterr().out)
    assert cost["qops"] > 0 and cost["flops"] == 0


def test_quantize_sweep_and_malformed_config(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--output", str(out)]) == 0
    assert (
        main(["quantize", "--checkpoint", str(out / "last.pt"), "--sweep", "--calibration-batches", "1", "--json"]) == 0
    )
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["config"] for r in rows][:2] == ["32/32", "8/8-8/8-8/8-8/8"] and len(rows) == 5
    assert main(["quantize", "--checkpoint", str(out / "last.pt"), "--config", "8/8-4/8"]) == 2
    assert "I-S-E-O" in capsys.readouterr().err
