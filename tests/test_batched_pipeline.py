"""The batched (GPU) input pipeline against torchvision, timm and PIL, run on CPU tensors (and CUDA when present).

Tolerances are in uint8 levels (0-255) and were set from measured differences:
PIL rounds its integer ops the way ``bnext.data.randaugment`` does (at most 1
level apart); resampling ops differ only in filters and edge handling.
"""

import copy
import io
import json
import math
import random
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from bnext.config import DEFAULTS
from bnext.data import build_data, resolve_pipeline
from bnext.data import randaugment as ra
from bnext.data.batched_transforms import (
    BatchTransform,
    flip,
    random_resized_crop_boxes,
    resize_center_crop,
    resized_crops,
)
from bnext.data.decode import decode_batch
from bnext.data.natural_images import natural_image, write_jpeg_folder
from bnext.data.prefetch import prefetch
from bnext.errors import UserError
from bnext.train import Trainer
from tests.helpers import DEVICES, tiny_config

timm_aa = pytest.importorskip("timm.data.auto_augment")
FILL = (124, 116, 104)  # timm's img_mean for the ImageNet mean
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return natural_image(60, 72, seed=3)


def as_batch(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).permute(2, 0, 1)[None].float()


def timm_op(name: str, magnitude: float, negate: bool, image: Image.Image, resample=Image.BILINEAR, fill=FILL):
    """timm's op at a fixed magnitude and sign, on a PIL image."""
    op = timm_aa.AugmentOp(name, prob=1.0, magnitude=magnitude, hparams={"img_mean": fill, "interpolation": resample})
    original = timm_aa._randomly_negate
    timm_aa._randomly_negate = lambda v: -v if negate else v
    try:
        return np.asarray(op(image)).astype(np.float64)
    finally:
        timm_aa._randomly_negate = original


def our_op(name: str, magnitude: float, negate: bool, batch: torch.Tensor, bicubic=False) -> np.ndarray:
    arg = ra.op_argument(name, torch.tensor([magnitude], dtype=torch.float64), torch.tensor([negate]))
    if name in ra.GEOMETRIC_OPS:
        matrices = ra.pil_affine(name, arg, *batch.shape[-2:])
        out = ra.warp(batch, matrices, bicubic, torch.tensor(FILL, dtype=torch.float32))
    else:
        out = ra.color_op(name, batch, arg)
    return out[0].permute(1, 2, 0).numpy()


COLOR_OPS = sorted((set(ra.PLAIN_OPS) | set(ra.INCREASING_OPS)) - ra.GEOMETRIC_OPS)


@pytest.mark.parametrize("name", COLOR_OPS)
@pytest.mark.parametrize("magnitude,negate", [(3.0, False), (7.0, False), (7.0, True), (9.0, True)])
def test_each_color_op_matches_timm(photo, name, magnitude, negate):
    """Every pixel within 1 level of timm's PIL op, and almost all identical."""
    ours = our_op(name, magnitude, negate, as_batch(photo))
    theirs = timm_op(name, magnitude, negate, Image.fromarray(photo))
    difference = np.abs(ours - theirs)
    assert difference.max() <= 1
    assert difference.mean() <= 0.01


def interior(name: str, magnitude: float, negate: bool, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood samples inside the source image (PIL's fill edges differ by design)."""
    white = Image.new("RGB", (shape[1], shape[0]), (255, 255, 255))
    inside = timm_op(name, magnitude, negate, white, resample=Image.NEAREST, fill=(0, 0, 0))[..., 0] == 255
    mask = torch.from_numpy(inside)[None, None].float()
    return (-torch.nn.functional.max_pool2d(-mask, 3, 1, 1))[0, 0].numpy() > 0


@pytest.mark.parametrize("name", sorted(ra.GEOMETRIC_OPS))
@pytest.mark.parametrize("magnitude,negate", [(3.0, False), (7.0, True), (10.0, False)])
@pytest.mark.parametrize("bicubic", [False, True])
def test_each_geometric_op_matches_timm(photo, name, magnitude, negate, bicubic):
    """Inside the image: bilinear within 1 level for 99.5% of values (mean <= 0.35); bicubic differs more
    (torch's cubic uses a = -0.75, PIL's a = -0.5): mean <= 1.25 levels, 99% within 6."""
    ours = our_op(name, magnitude, negate, as_batch(photo), bicubic)
    resample = Image.BICUBIC if bicubic else Image.BILINEAR
    theirs = timm_op(name, magnitude, negate, Image.fromarray(photo), resample)
    difference = np.abs(ours - theirs)[interior(name, magnitude, negate, photo.shape[:2])]
    if bicubic:
        assert difference.mean() <= 1.25 and np.quantile(difference, 0.99) <= 6
    else:
        assert difference.mean() <= 0.35 and np.mean(difference <= 1) >= 0.995


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov distance."""
    points = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(np.sort(a), points, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), points, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


def test_ops_and_magnitudes_are_drawn_as_timm_draws_them():
    """Op frequencies, the share of ops applied, and each op's argument distribution, against timm's sampler."""
    draws_per_side = 12000
    transform = timm_aa.rand_augment_transform("rand-m7-mstd0.5", {"img_mean": FILL})
    theirs: dict[str, list[float]] = {name: [] for name in ra.PLAIN_OPS}
    for op in transform.ops:
        op.aug_fn = lambda img, *args, _name=op.name, **_: theirs[_name].append(args[0] if args else 0.0) or img
    random.seed(0)
    np.random.seed(0)
    tiny = Image.new("RGB", (4, 4))
    for _ in range(draws_per_side):
        transform(tiny)
    spec = ra.RandAugmentSpec.parse("rand-m7-mstd0.5")
    draws = ra.draw(spec, draws_per_side, torch.Generator().manual_seed(0))
    applied_ours = draws.applied.sum().item()
    applied_theirs = sum(len(v) for v in theirs.values())
    layers = spec.num_layers * draws_per_side
    assert abs(applied_ours - applied_theirs) / layers < 0.02  # both ~50% of op slots
    for index, name in enumerate(spec.ops):
        chosen = (draws.op == index) & draws.applied
        ours = ra.op_argument(name, draws.magnitude[chosen], draws.negate[chosen]).numpy()
        assert abs(len(ours) - len(theirs[name])) / layers < 0.012, name  # each op ~1/15 of the slots
        if name not in ("AutoContrast", "Equalize", "Invert"):
            assert ks_statistic(ours, np.asarray(theirs[name], dtype=np.float64)) < 0.08, name


def test_randaugment_strings_parse_like_timm():
    spec = ra.RandAugmentSpec.parse("rand-m9-n3-mstd0.5-inc1")
    assert (spec.magnitude, spec.num_layers, spec.magnitude_std, spec.increasing) == (9.0, 3, 0.5, True)
    assert ra.RandAugmentSpec.parse("rand-m7-mstd101").magnitude_std == math.inf  # timm: uniform sampling
    with pytest.raises(UserError, match="tweights"):
        ra.RandAugmentSpec.parse("rand-m7-tweights")
    with pytest.raises(UserError, match="must start with 'rand-'"):
        ra.RandAugmentSpec.parse("augmix-m5")


def test_random_resized_crop_boxes_follow_torchvision():
    """Area share, aspect ratio and position distributions against ``RandomResizedCrop.get_params``; the
    fallback for an extreme aspect ratio is exactly torchvision's box."""
    height, width, count = 375, 500, 4000
    ours = random_resized_crop_boxes(torch.tensor([[height, width]] * count), torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    image = torch.empty(3, height, width)
    theirs = torch.tensor([v2.RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(count)])
    for a, b in ((ours, theirs),):
        area_a = (a[:, 2] * a[:, 3]).double() / (height * width)
        area_b = (b[:, 2] * b[:, 3]).double() / (height * width)
        assert ks_statistic(area_a.numpy(), area_b.numpy()) < 0.05
        ratio_a, ratio_b = (a[:, 3] / a[:, 2]).log(), (b[:, 3] / b[:, 2]).log()
        assert ks_statistic(ratio_a.numpy(), ratio_b.numpy()) < 0.05
        centre_a = (a[:, 0] + a[:, 2] / 2).double() / height
        centre_b = (b[:, 0] + b[:, 2] / 2).double() / height
        assert ks_statistic(centre_a.numpy(), centre_b.numpy()) < 0.05
    assert (ours[:, 0] >= 0).all() and (ours[:, 0] + ours[:, 2] <= height).all()
    assert (ours[:, 1] >= 0).all() and (ours[:, 1] + ours[:, 3] <= width).all()
    thin = torch.tensor([[20, 400]])
    box = random_resized_crop_boxes(thin, torch.Generator().manual_seed(1))[0].tolist()
    assert box == list(v2.RandomResizedCrop.get_params(torch.empty(3, 20, 400), [0.08, 1.0], [3 / 4, 4 / 3]))


@pytest.fixture(scope="module")
def photos() -> list[torch.Tensor]:
    shapes = [(375, 500), (300, 420), (480, 320)]
    return [
        torch.from_numpy(natural_image(h, w, seed=i)).permute(2, 0, 1).contiguous() for i, (h, w) in enumerate(shapes)
    ]


def test_resized_crops_equal_torchvision(photos):
    """Down- and upscaled boxes: exactly torchvision's antialiased ``resized_crop`` of the uint8 image."""
    boxes = torch.tensor([[10, 20, 300, 400], [50, 60, 100, 120], [0, 0, 480, 320]])
    out = resized_crops(photos, boxes, 224)
    for image, box, ours in zip(photos, boxes.tolist(), out, strict=True):
        assert torch.equal(ours, v2.functional.resized_crop(image, *box, [224, 224]).float())


def test_eval_transform_equals_resize_and_centre_crop(photos):
    out = resize_center_crop(photos, 224)
    reference = v2.Compose([v2.Resize(256), v2.CenterCrop(224)])
    for image, ours in zip(photos, out, strict=True):
        assert torch.equal(ours, reference(image).float())


def test_flip_mirrors_exactly_the_chosen_images(photos):
    batch = resize_center_crop(photos, 64)
    flips = torch.tensor([True, False, True])
    out = flip(batch, flips)
    for index, flipped in enumerate(flips.tolist()):
        assert torch.equal(out[index], batch[index].flip(-1) if flipped else batch[index])


def jpeg_bytes(pixels: np.ndarray, mode: str = "RGB", fmt: str = "JPEG") -> torch.Tensor:
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, fmt)
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def pil_decode(data: torch.Tensor) -> torch.Tensor:
    with Image.open(io.BytesIO(data.numpy().tobytes())) as image:
        return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_batch_decode_matches_pil(device):
    """JPEG (RGB, grayscale, CMYK) and PNG decode within JPEG-decoder tolerance of PIL: mean <= 1 level,
    99.9% within 4 levels (nvJPEG's IDCT and chroma upsampling differ slightly from libjpeg-turbo's)."""
    photo = natural_image(90, 120, seed=5)
    files = [jpeg_bytes(photo), jpeg_bytes(photo, "L"), jpeg_bytes(photo, "CMYK"), jpeg_bytes(photo, fmt="PNG")]
    decoded = decode_batch(files, torch.device(device))
    for data, image in zip(files, decoded, strict=True):
        assert image is not None and image.device.type == device and image.shape == (3, 90, 120)
        difference = (image.cpu().float() - pil_decode(data).float()).abs()
        assert difference.mean() <= 1.0 and torch.quantile(difference.flatten(), 0.999) <= 4


def test_undecodable_files_become_none():
    photo = jpeg_bytes(natural_image(40, 40, seed=6))
    files = [photo, photo[: len(photo) // 2], torch.tensor([0xFF, 0xD8, 0xFF, 1, 2, 3], dtype=torch.uint8)]
    files += [torch.empty(0, dtype=torch.uint8), torch.frombuffer(bytearray(b"plain text"), dtype=torch.uint8)]
    assert [image is not None for image in decode_batch(files, torch.device("cpu"))] == [True] + [False] * 4


def colour_folder(root):
    """train/{red,green,blue,grey}: solid-colour images (RGB, CMYK and grayscale JPEG, PNG, BMP) and broken files."""
    colours = {"a_red": (220, 30, 30), "b_green": (30, 200, 40), "c_blue": (30, 40, 210), "d_grey": (128, 128, 128)}
    for split in ("train", "val"):
        for name, rgb in colours.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            pixels = np.empty((48, 64, 3), dtype=np.uint8)
            pixels[:] = rgb
            for index in range(3):
                Image.fromarray(pixels).save(folder / f"rgb_{index}.jpg", quality=95)
            mode, fmt, suffix = {
                "a_red": ("CMYK", "JPEG", "jpg"),
                "b_green": ("RGB", "PNG", "png"),
                "c_blue": ("RGB", "BMP", "bmp"),  # neither JPEG nor a torchvision format: PIL decodes it
                "d_grey": ("L", "JPEG", "jpg"),
            }[name]
            Image.fromarray(pixels).convert(mode).save(folder / f"other.{suffix}", fmt)
    good = (root / "train" / "a_red" / "rgb_0.jpg").read_bytes()
    (root / "train" / "a_red" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "train" / "b_green" / "garbage.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (root / "train" / "c_blue" / "empty.jpg").write_bytes(b"")
    return root, list(colours.values())


def pipeline_config(root, **data):
    config = copy.deepcopy(DEFAULTS)
    config["data"].update(dataset="folder", data_dir=str(root), image_size=32, pipeline="gpu", num_workers=0)
    config["data"].update(data)
    config["train"]["batch_size"] = 5
    return config


def test_broken_files_are_skipped_and_counted_and_labels_stay_right(tmp_path):
    """CMYK, grayscale and PNG images decode; truncated, garbage and empty files are skipped and counted; every
    image that comes out carries its own folder's label (checked by its colour)."""
    root, colours = colour_folder(tmp_path)
    config = pipeline_config(root, augment="none")
    config["train"]["batch_size"] = 19  # one batch of all 19 files: none dropped as a partial batch
    bundle = build_data(config)
    mean, std = torch.tensor(bundle.mean).view(3, 1, 1), torch.tensor(bundle.std).view(3, 1, 1)
    seen, skipped = 0, 0
    for images, labels, lost in bundle.train.epoch(0):
        skipped += lost
        for image, label in zip(images, labels.tolist(), strict=True):
            rgb = ((image * std + mean) * 255).mean((1, 2))
            assert torch.allclose(rgb, torch.tensor(colours[label], dtype=torch.float32), atol=12)
            seen += 1
    assert skipped == 3 and seen == 16


def test_resume_mid_epoch_sees_the_same_batches(tmp_path):
    write_jpeg_folder(tmp_path, classes=3, per_class=6, val_per_class=1, sizes=(40, 70))
    config = pipeline_config(tmp_path, augment="imagenet", num_workers=2)
    config["train"]["batch_size"] = 4
    loader = build_data(config).train
    full = list(loader.epoch(2))
    resumed = list(loader.epoch(2, start_batch=2))
    assert len(full) == 4 and len(resumed) == 2
    for (images_a, labels_a, _), (images_b, labels_b, _) in zip(full[2:], resumed, strict=True):
        assert torch.equal(images_a, images_b) and torch.equal(labels_a, labels_b)
    other_epoch = next(loader.epoch(3))[0]
    assert not torch.equal(other_epoch, full[0][0])


def test_ranks_read_disjoint_shards(tmp_path):
    write_jpeg_folder(tmp_path, classes=2, per_class=8, val_per_class=1, sizes=(32, 48))
    files = []
    for rank in (0, 1):
        config = pipeline_config(tmp_path)
        config["train"]["batch_size"] = 8
        bundle = build_data(config, rank=rank, world=2)
        files.append({bytes(data.numpy()) for encoded, _ in bundle.train.encoded_batches(0) for data in encoded})
    assert len(files[0]) == len(files[1]) == 8 and not files[0] & files[1]


def test_pipeline_choice_and_errors(tmp_path):
    assert resolve_pipeline("auto", torch.device("cpu")) == "cpu"
    assert resolve_pipeline("auto", torch.device("cuda")) == "gpu"
    with pytest.raises(UserError, match="unknown data.pipeline 'dali'"):
        resolve_pipeline("dali", torch.device("cpu"))
    write_jpeg_folder(tmp_path, classes=2, per_class=2, val_per_class=1, sizes=(32, 40))
    with pytest.raises(UserError, match="not supported by the batched pipeline"):
        build_data(pipeline_config(tmp_path, augment="imagenet", randaugment="rand-m9-tweights"))


@CUDA
def test_cuda_batches_match_cpu_batches(photos):
    """The same seed gives the same augmented batch on CUDA as on CPU (up to float resampling differences)."""
    transform = BatchTransform("imagenet", 96, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "rand-m7-mstd0.5")
    on_cpu = transform(photos, torch.Generator().manual_seed(4))
    on_cuda = transform([p.cuda() for p in photos], torch.Generator().manual_seed(4)).cpu()
    assert (on_cpu - on_cuda).abs().mean() <= 0.02  # normalized units: ~1 level


@pytest.mark.parametrize("device", DEVICES)
def test_training_through_the_gpu_pipeline_counts_skipped_files_and_resumes(tmp_path, device):
    """A short ``Trainer`` run on a JPEG folder with a broken file: trains, evaluates, records the skip, and a
    run resumed after its first epoch ends with the same weights as the straight run (exact on CPU)."""
    write_jpeg_folder(tmp_path / "data", classes=2, per_class=12, val_per_class=2, sizes=(36, 60))
    (tmp_path / "data" / "train" / "n00000001" / "broken.JPEG").write_bytes(b"\xff\xd8\xff broken")

    def config(output, epochs):
        run = tiny_config(tmp_path / output, epochs=epochs, device=device, batch_size=5)
        run["data"].update(dataset="folder", data_dir=str(tmp_path / "data"), image_size=32, pipeline="gpu")
        run["data"].update(augment="imagenet", num_workers=1)
        return run

    straight = Trainer(config("straight", 2))
    record = straight.fit()
    assert straight.data.pipeline == "gpu" and "val_top1" in record
    lines = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert sum(line["skipped_images"] for line in lines) >= 1  # 25 files, batches of 5: the broken one is read
    first = Trainer(config("resumed", 2))
    first.cfg["epochs"] = 1  # stop after one epoch, as a killed run would
    first.fit()
    resumed = Trainer(config("resumed", 2))
    resumed.resume(tmp_path / "resumed" / "last.pt")
    resumed.fit()
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        if device == "cpu":
            assert torch.equal(a, b)
        else:  # cuDNN's default (non-deterministic) algorithms: close, not bit-exact
            assert torch.allclose(a.float(), b.float(), atol=1e-3)


def test_prefetch_yields_the_same_batches_and_raises_the_producers_error():
    def numbers(fail_at=None):
        for index in range(6):
            if index == fail_at:
                raise UserError("a corrupt shard")
            yield torch.full((2,), float(index)), index

    out = list(prefetch(numbers(), torch.device("cpu"), depth=2))
    assert [int(tensor[0]) for tensor, _ in out] == [0, 1, 2, 3, 4, 5] and [i for _, i in out] == list(range(6))
    with pytest.raises(UserError, match="a corrupt shard"):
        list(prefetch(numbers(fail_at=3), torch.device("cpu")))

    def endless():
        index = 0
        while True:
            index += 1
            yield (torch.zeros(1), index)

    before = threading.active_count()
    for _, index in prefetch(endless(), torch.device("cpu"), depth=1):
        if index == 3:
            break  # the consumer stops early (Ctrl-C, end of a timed run): the thread ends too
    assert threading.active_count() == before


def test_prefetched_loader_equals_the_plain_loader(tmp_path):
    write_jpeg_folder(tmp_path, classes=2, per_class=6, val_per_class=1, sizes=(40, 60))
    config = pipeline_config(tmp_path, augment="imagenet")
    config["train"]["batch_size"] = 4
    loader = build_data(config).train
    assert loader.prefetch == 0  # on CPU: no thread by default
    plain = list(loader.epoch(1))
    loader.prefetch = 2
    ahead = list(loader.epoch(1))
    assert len(ahead) == len(plain) == 3
    for (images_a, labels_a, _), (images_b, labels_b, _) in zip(ahead, plain, strict=True):
        assert torch.equal(images_a, images_b) and torch.equal(labels_a, labels_b)
