"""Datasets in their real layouts (generated), augmentation, and bad-input errors."""

import copy

import pytest
import torch

from bnext.config import DEFAULTS
from bnext.data import build_data
from bnext.data.augment import pad_crop_flip
from bnext.data.loader import epoch_indices
from bnext.data.memory import DEBIAN_FASHION_MNIST, fashion_mnist
from bnext.errors import UserError
from tests.datasets_on_disk import write_cifar, write_fashion_mnist, write_image_folder


def config_for(dataset, data_dir=None, **data):
    config = copy.deepcopy(DEFAULTS)
    config["data"].update(dataset=dataset, data_dir=str(data_dir) if data_dir else None, num_workers=0, **data)
    config["train"]["batch_size"] = 8
    return config


@pytest.mark.parametrize("layout", ["debian", "torchvision"])
def test_fashion_mnist_idx_layouts(tmp_path, layout):
    write_fashion_mnist(tmp_path, torchvision_layout=layout == "torchvision", gz=layout == "debian")
    bundle = build_data(config_for("fashion-mnist", tmp_path))
    images, _labels, skipped = next(bundle.train.epoch(0))
    assert images.shape == (8, 3, 32, 32) and images.dtype == torch.float32
    assert bundle.num_classes == 10 and skipped == 0
    assert torch.equal(images[:, 0], images[:, 1])  # grey made 3-channel


def test_fashion_mnist_pads_28_to_32(tmp_path):
    write_fashion_mnist(tmp_path)
    split = fashion_mnist(tmp_path, train=False)
    assert split.images.shape == (40, 3, 32, 32)
    assert split.images[:, :, :2].sum() == 0 and split.images[:, :, :, -2:].sum() == 0


@pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist_from_debian_package():
    split = fashion_mnist(None, train=False)
    assert len(split) == 10_000 and split.labels.bincount().tolist() == [1000] * 10


@pytest.mark.parametrize("classes", [10, 100])
def test_cifar_torchvision_layout(tmp_path, classes):
    write_cifar(tmp_path, classes)
    bundle = build_data(config_for(f"cifar{classes}", tmp_path))
    assert bundle.num_classes == classes
    images, labels, _ = next(bundle.val.epoch(0))
    assert images.shape == (8, 3, 32, 32) and labels.max() < classes


def test_cifar_missing_files_say_how_to_fix(tmp_path):
    with pytest.raises(UserError, match="data.download=true"):
        build_data(config_for("cifar10", tmp_path))


@pytest.mark.parametrize("pipeline", ["cpu", "gpu"])
@pytest.mark.parametrize("dataset,augment", [("imagenet", "imagenet"), ("folder", "cifar"), ("folder", "none")])
def test_image_folder_layouts(tmp_path, dataset, augment, pipeline):
    write_image_folder(tmp_path)
    bundle = build_data(config_for(dataset, tmp_path, image_size=32, augment=augment, pipeline=pipeline))
    assert bundle.pipeline == pipeline
    images, _labels, skipped = next(bundle.train.epoch(0))
    assert images.shape == (8, 3, 32, 32) and skipped == 0
    assert bundle.classes == ["class_0", "class_1", "class_2"]
    val_images, _, _ = next(bundle.val.epoch(0))
    assert val_images.shape[1:] == (3, 32, 32)


def test_missing_dataset_path(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        build_data(config_for("imagenet", tmp_path / "nowhere"))
    with pytest.raises(UserError, match="needs data.data_dir"):
        build_data(config_for("folder"))
    with pytest.raises(UserError, match="Fashion-MNIST train files not found"):
        build_data(config_for("fashion-mnist", tmp_path))


def test_unknown_dataset():
    with pytest.raises(UserError, match="unknown dataset 'mnist3d'"):
        build_data(config_for("mnist3d"))


def test_empty_class_folder_is_named(tmp_path):
    write_image_folder(tmp_path)
    (tmp_path / "train" / "class_9").mkdir()
    with pytest.raises(UserError, match="class_9 holds no images"):
        build_data(config_for("folder", tmp_path))


@pytest.mark.parametrize("pipeline", ["cpu", "gpu"])
def test_corrupt_image_is_skipped_and_counted(tmp_path, pipeline):
    write_image_folder(tmp_path, per_class=2)
    (tmp_path / "train" / "class_1" / "img_0.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    config = config_for("folder", tmp_path, image_size=32, pipeline=pipeline)
    config["train"]["batch_size"] = 2
    batches = list(build_data(config).train.epoch(0))
    assert len(batches) == 3  # 6 images in batches of 2
    assert sum(skipped for _, _, skipped in batches) == 1
    assert sum(len(labels) for _, labels, _ in batches) == 5


def test_truncated_idx_file(tmp_path):
    write_fashion_mnist(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(UserError, match="truncated"):
        fashion_mnist(tmp_path, train=True)


def test_pad_crop_flip_matches_per_image_reference():
    images = torch.randint(0, 256, (6, 3, 10, 12), dtype=torch.uint8)
    out = pad_crop_flip(images, 4, torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    dy = torch.randint(0, 9, (6,), generator=generator)
    dx = torch.randint(0, 9, (6,), generator=generator)
    flip = torch.rand(6, generator=generator) < 0.5
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    for i in range(6):
        crop = padded[i, :, dy[i] : dy[i] + 10, dx[i] : dx[i] + 12]
        assert torch.equal(out[i], crop.flip(2) if flip[i] else crop)


def test_epoch_indices_are_deterministic_disjoint_and_repeatable():
    a = epoch_indices(100, 3, 7, shuffle=True)
    assert torch.equal(a, epoch_indices(100, 3, 7, shuffle=True))
    assert not torch.equal(a, epoch_indices(100, 4, 7, shuffle=True))
    r0 = epoch_indices(100, 3, 7, shuffle=True, rank=0, world=2)
    r1 = epoch_indices(100, 3, 7, shuffle=True, rank=1, world=2)
    assert len(r0) == len(r1) == 50 and not set(r0.tolist()) & set(r1.tolist())
    repeated = epoch_indices(100, 0, 7, shuffle=True, repeats=3)
    assert len(repeated) == 100 and len(set(repeated.tolist())) == 34
    val = torch.cat([epoch_indices(11, 0, 0, shuffle=False, rank=r, world=2) for r in range(2)])
    assert sorted(val.tolist()) == list(range(11))


def test_subset_keeps_first_images(tmp_path):
    write_fashion_mnist(tmp_path)
    bundle = build_data(config_for("fashion-mnist", tmp_path, subset=16))
    assert len(bundle.train.split) == 16 and len(bundle.train) == 2
