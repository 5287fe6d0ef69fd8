"""The trainer: exact resume, interrupts, metrics, plots, bad checkpoints and class counts."""

import json

import pytest
import torch

from bnext.checkpoint import CheckpointError, save_checkpoint
from bnext.errors import UserError
from bnext.train import Trainer
from tests.helpers import InterruptAt, tiny_config


def weights(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_two_epochs_equal_one_plus_resume_plus_one(tmp_path):
    straight = Trainer(tiny_config(tmp_path / "a", epochs=2))
    straight.fit()

    first = Trainer(tiny_config(tmp_path / "b", epochs=2))
    first.cfg["epochs"] = 1  # stop after one epoch, as a killed run would
    first.fit()
    resumed = Trainer(tiny_config(tmp_path / "b", epochs=2))
    resumed.resume(tmp_path / "b" / "last.pt")
    assert resumed.start_epoch == 1
    resumed.fit()
    assert_same(weights(straight), weights(resumed))
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1]


def test_ctrl_c_saves_and_resume_mid_epoch_is_exact(tmp_path):
    straight = Trainer(tiny_config(tmp_path / "a", epochs=2))
    straight.fit()

    interrupted = Trainer(tiny_config(tmp_path / "b", epochs=2))
    interrupted.criterion = InterruptAt(interrupted.criterion, at_call=9)  # epoch 1, batch 3 of 6
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    resumed = Trainer(tiny_config(tmp_path / "b", epochs=2))
    resumed.resume(tmp_path / "b" / "last.pt")
    assert (resumed.start_epoch, resumed.start_batch) == (1, 3)  # the interrupted step was finished
    resumed.fit()
    assert_same(weights(straight), weights(resumed))


def test_metrics_jsonl_and_curves(tmp_path):
    trainer = Trainer(tiny_config(tmp_path, epochs=2))
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
    with pytest.raises(UserError, match="num_classes=1000 but dataset 'synthetic' has 4 classes"):
        Trainer(config)


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


def test_batchnorm_recalibration_equals_average_of_batch_statistics(tmp_path):
    from bnext.train.evaluate import recalibrate_batchnorm

    trainer = Trainer(tiny_config(tmp_path, epochs=1))
    model = trainer.model
    batches = [images for images, _, _ in trainer.data.train.epoch(1_000_000 + 3)][:3]
    with torch.no_grad():
        means = [model.stem.conv1(images).mean(dim=(0, 2, 3)) for images in batches]
    recalibrate_batchnorm(model, trainer.data.train, epoch=3, batches=3, device=torch.device("cpu"))
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
