"""The trainer: exact resume, interrupts, metrics, plots, bad checkpoints and class counts."""

import json

import pytest
import torch

from bnext.checkpoint import CheckpointError, save_checkpoint
from bnext.errors import UserError
from bnext.train import Trainer
from tests.helpers import DEVICES, InterruptAt, tiny_config


def weights(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def assert_close_weights(a, b):
    """Resume on CUDA without deterministic kernels: cuDNN / atomics reorder float sums, so weights
    drift by rounding; over 12 steps they stay within 1e-2 absolute (latent weights live in [-1.5, 1.5])."""
    assert a.keys() == b.keys()
    for key in a:
        if a[key].is_floating_point():
            torch.testing.assert_close(a[key], b[key], rtol=0.0, atol=1e-2, msg=key)


def exact_config(output, device, **train):
    """Bit-exact resume needs deterministic kernels on CUDA (CPU kernels are deterministic anyway)."""
    return tiny_config(output, epochs=2, device=device, deterministic=device == "cuda", **train)


@pytest.mark.parametrize("device", DEVICES)
def test_two_epochs_equal_one_plus_resume_plus_one(tmp_path, device):
    straight = Trainer(exact_config(tmp_path / "a", device))
    straight.fit()

    first = Trainer(exact_config(tmp_path / "b", device))
    first.cfg["epochs"] = 1  # stop after one epoch, as a killed run would
    first.fit()
    resumed = Trainer(exact_config(tmp_path / "b", device))
    resumed.resume(tmp_path / "b" / "last.pt")
    assert resumed.start_epoch == 1
    resumed.fit()
    assert_same(weights(straight), weights(resumed))
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1]


@pytest.mark.parametrize("device", DEVICES)
def test_ctrl_c_saves_and_resume_mid_epoch_is_exact(tmp_path, device):
    straight = Trainer(exact_config(tmp_path / "a", device))
    straight.fit()

    interrupted = Trainer(exact_config(tmp_path / "b", device))
    interrupted.criterion = InterruptAt(interrupted.criterion, at_call=9)  # epoch 1, batch 3 of 6
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    resumed = Trainer(exact_config(tmp_path / "b", device))
    resumed.resume(tmp_path / "b" / "last.pt")
    assert (resumed.start_epoch, resumed.start_batch) == (1, 3)  # the interrupted step was finished
    resumed.fit()
    assert_same(weights(straight), weights(resumed))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_resume_on_cuda_without_deterministic_mode_is_close(tmp_path):
    straight = Trainer(tiny_config(tmp_path / "a", epochs=2, device="cuda"))
    straight.fit()
    first = Trainer(tiny_config(tmp_path / "b", epochs=2, device="cuda"))
    first.cfg["epochs"] = 1
    first.fit()
    resumed = Trainer(tiny_config(tmp_path / "b", epochs=2, device="cuda"))
    resumed.resume(tmp_path / "b" / "last.pt")
    resumed.fit()
    assert_close_weights(weights(straight), weights(resumed))


def test_every_epoch_prints_one_summary_line_without_a_terminal(tmp_path, capsys):
    Trainer(tiny_config(tmp_path, epochs=2)).fit()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2
    assert lines[0].startswith("epoch 1/2  train loss ") and "img/s" in lines[0] and "ETA " in lines[0]
    assert "val top-1" in lines[1] and lines[1].endswith("ETA 0m00s")


def test_more_ranks_than_gpus_is_a_clear_error(monkeypatch):
    from bnext.train.distributed import init_distributed

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "1"), ("LOCAL_RANK", "1")):  # a valid 2-rank launch
        monkeypatch.setenv(name, value)
    with pytest.raises(UserError, match=r"local rank 1 has no GPU.*--nproc_per_node=1"):
        init_distributed("cuda")


def test_cuda_asked_without_a_gpu_is_a_clear_error(monkeypatch):
    from bnext.train.distributed import init_distributed

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(UserError, match="no CUDA GPU is visible"):
        init_distributed("cuda")


def test_fp_model_logs_no_temperature(tmp_path):
    config = tiny_config(tmp_path, epochs=1)
    config["model"] = {"name": "resnet18_fp", "kwargs": {"width_multiplier": 0.125, "stem_stride": 2}}
    record = Trainer(config).fit()
    assert "temperature" not in record and "lr" in record
    assert (tmp_path / "curves.png").stat().st_size > 10_000


@pytest.mark.parametrize("device", DEVICES)
def test_metrics_jsonl_and_curves(tmp_path, device):
    trainer = Trainer(tiny_config(tmp_path, epochs=2, device=device))
    trainer.fit()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for key in (
        "epoch",
        "lr",
        "temperature",
        "train_loss",
        "train_top1",
        "val_top1",
        "val_top5",
        "images_per_s",
        "data_time_share",
    ):
        assert key in records[-1]
    assert records[1]["temperature"] == pytest.approx(0.9)
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "config.yaml").is_file()


def test_resume_refuses_foreign_and_truncated_checkpoints(tmp_path):
    trainer = Trainer(tiny_config(tmp_path / "run", epochs=1))
    weights_only = save_checkpoint(trainer.model, tmp_path / "weights.pt", model_name="bnext_tiny")
    with pytest.raises(CheckpointError, match="not a bnext training checkpoint"):
        trainer.resume(weights_only)
    trainer.fit()
    last = tmp_path / "run" / "last.pt"
    last.write_bytes(last.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated"):
        Trainer(tiny_config(tmp_path / "run", epochs=2)).resume(last)


def test_resume_with_other_model_is_refused(tmp_path):
    Trainer(tiny_config(tmp_path / "run", epochs=1)).fit()
    config = tiny_config(tmp_path / "other", epochs=2)
    config["model"] = {"name": "bnext18", "kwargs": {"stem_stride": 1, "width_multiplier": 0.125}}
    with pytest.raises(CheckpointError, match="trained as 'bnext_tiny'"):
        Trainer(config).resume(tmp_path / "run" / "last.pt")


def test_class_count_mismatch_is_named(tmp_path):
    config = tiny_config(tmp_path)
    config["model"]["kwargs"]["num_classes"] = 1000
    with pytest.raises(
        UserError, match=r"dataset 'synthetic' \(model.kwargs.num_classes=1000\) has 4 classes but 1000 are needed"
    ):
        Trainer(config)


@pytest.mark.slow
def test_training_learns_the_synthetic_task(tmp_path):
    config = tiny_config(tmp_path, epochs=5, temperature_decay="auto", warmup_epochs=0, lr=3e-3, batch_size=32)
    config["data"]["synthetic_size"] = 1280
    record = Trainer(config).fit()
    assert record["temperature"] < 1e-7  # last epoch ran with exact sign(w)
    assert record["val_top1"] > 60.0  # 4 classes: chance is 25%


def test_mixup_cutmix_and_repeated_aug_options_train(tmp_path):
    config = tiny_config(tmp_path, epochs=1)
    config["data"].update(mixup=0.8, cutmix=1.0, repeated_aug=3)
    record = Trainer(config).fit()
    assert torch.isfinite(torch.tensor(record["train_loss"]))


@pytest.mark.parametrize("device", DEVICES)
def test_batchnorm_recalibration_equals_average_of_batch_statistics(tmp_path, device):
    from bnext.train.evaluate import recalibrate_batchnorm

    trainer = Trainer(tiny_config(tmp_path, epochs=1, device=device))
    model = trainer.model
    batches = [images for images, _, _ in trainer.data.train.epoch(1_000_000 + 3)][:3]
    with torch.no_grad():
        means = [model.stem.conv1(images).mean(dim=(0, 2, 3)) for images in batches]
    recalibrate_batchnorm(model, trainer.data.train, epoch=3, batches=3, device=torch.device(device))
    torch.testing.assert_close(model.stem.bn1.running_mean, torch.stack(means).mean(0), rtol=1e-5, atol=1e-6)
    assert model.stem.bn1.momentum == 0.1 and model.training


def test_per_step_temperature_is_continuous_and_ends_binary(tmp_path):
    from bnext.train.schedule import temperature_at_epoch

    cfg = {"temperature_decay": "auto", "epochs": 3}
    assert temperature_at_epoch(0.5, cfg) == pytest.approx(temperature_at_epoch(1, cfg) ** 0.5)
    assert temperature_at_epoch(2.7, cfg) == temperature_at_epoch(2, cfg) < 1e-7
    config = tiny_config(tmp_path, epochs=3, temperature_decay="auto", temperature_per_step=True)
    trainer = Trainer(config)
    trainer.fit()
    assert float(trainer.model.blocks[0].mixer.binary_conv.temperature) < 1e-7


def test_per_step_lr_follows_the_cosine_within_epochs(tmp_path):
    from bnext.train.schedule import lr_at_epoch

    config = tiny_config(tmp_path, epochs=2, warmup_epochs=0, lr_per_step=True)
    trainer = Trainer(config)
    seen = []
    trainer.optimizer.register_step_pre_hook(lambda optimizer, *_: seen.append(optimizer.param_groups[0]["lr"]))
    trainer.fit()
    steps = len(trainer.data.train)
    expected = [lr_at_epoch(epoch + index / steps, trainer.cfg) for epoch in range(2) for index in range(steps)]
    assert seen == pytest.approx(expected, rel=1e-12)
    assert len(set(seen)) == len(seen)  # a new lr every step, not one per epoch
