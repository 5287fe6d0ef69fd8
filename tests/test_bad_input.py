"""Bad input (issue 32): every case ends in a clear UserError, a skipped-and-counted image or a documented result.

Never a crash, a hang, code execution, a lost file or a silently wrong label. A case whose failure
would be a crash runs in a subprocess, so the crash fails its test instead of killing pytest.
"""

import copy
import json
import pickle
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import bnext
from bnext.atomic import check_output_path
from bnext.card import ModelCard
from bnext.checkpoint import CheckpointError, read_checkpoint
from bnext.cli import main
from bnext.config import DEFAULTS, load_config
from bnext.data import build_data
from bnext.data.image_checks import header_problem, header_size
from bnext.data.memory import cifar, fashion_mnist
from bnext.errors import UserError
from bnext.loading import model_from_checkpoint
from bnext.train.distributed import init_distributed
from tests.datasets_on_disk import write_cifar, write_fashion_mnist, write_idx
from tests.helpers import DEVICES

REPO = Path(__file__).resolve().parents[1]
COLOURS = {"a_red": (220, 30, 30), "b_green": (30, 200, 40), "c_blue": (30, 40, 210)}


def run_isolated(code: str) -> str:
    """Run ``code`` in a fresh Python; a crash (any non-zero exit, e.g. -11 for SIGSEGV) fails the test."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stderr[-2000:]}"
    return done.stdout


def cli_error(argv: list[str], capsys) -> str:
    """The CLI's one error line for ``argv`` (asserting exit code 2, one line, no traceback)."""
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header says width x height RGB but whose image data holds one short row (69 bytes at 100x100)."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", zlib.compress(b"\0" * 4)) + png_chunk(b"IEND", b"")


def data_config(root: Path, pipeline: str) -> dict:
    config = copy.deepcopy(DEFAULTS)
    config["data"].update(
        dataset="folder", data_dir=str(root), image_size=32, augment="none", num_workers=0, pipeline=pipeline
    )
    config["train"]["batch_size"] = 4
    return config


def colour_folder(root: Path, train: list[str], val: list[str], per_class: int = 2) -> Path:
    """train/ and val/ class folders of solid-colour JPEGs, so an image's true class can be read from its pixels."""
    for split, names in (("train", train), ("val", val)):
        for name in names:
            (root / split / name).mkdir(parents=True)
            for index in range(per_class):
                pixels = np.full((40, 40, 3), COLOURS[name], dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{index}.jpg", quality=95)
    return root


def tiny_checkpoint(path: Path, **extra) -> Path:
    return bnext.save_checkpoint(nn.Linear(2, 2), path, card=ModelCard("bnext_tiny", 2), **extra)


# ---------------------------------------------------------------- crashes


def read_in_subprocess(root: Path, device: str) -> dict[str, list]:
    """Read ``root``/train through the gpu and the cpu pipeline in a fresh Python, so a decoder crash fails the
    test instead of killing pytest: per pipeline [images skipped, images kept, the skip warnings]."""
    printed = run_isolated(f"""
        import copy, json, warnings, torch
        from bnext.config import DEFAULTS
        from bnext.data import build_data
        result = {{}}
        for pipeline in ("gpu", "cpu"):
            config = copy.deepcopy(DEFAULTS)
            config["data"].update(dataset="folder", data_dir={str(root)!r}, image_size=32, augment="none",
                                  num_workers=0, pipeline=pipeline)
            config["train"]["batch_size"] = 5
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                batches = list(build_data(config, device=torch.device({device!r})).train.epoch(0))
            result[pipeline] = [sum(skipped for _, _, skipped in batches), sum(len(y) for _, y, _ in batches),
                                [str(w.message) for w in caught if "skipped an image" in str(w.message)]]
        print(json.dumps(result))
    """)
    return json.loads(printed.splitlines()[-1])


@pytest.mark.parametrize("device", DEVICES)
def test_png_shorter_than_its_header_is_skipped_not_a_crash(tmp_path, device):
    """The 69-byte PNG made torchvision's decoder SIGSEGV in the gpu pipeline; both pipelines now skip it."""
    colour_folder(tmp_path, ["a_red", "c_blue"], ["a_red", "c_blue"])
    bad = png_claiming(100, 100)
    assert len(bad) == 69
    (tmp_path / "train" / "c_blue" / "short.png").write_bytes(bad)
    # 5 files in one batch: the PNG skipped (a decode failure, no header problem to name), 4 images kept
    assert read_in_subprocess(tmp_path, device) == {"gpu": [1, 4, []], "cpu": [1, 4, []]}


@pytest.mark.parametrize("device", DEVICES)
def test_png_claiming_20000x20000_is_skipped_in_both_pipelines(tmp_path, device):
    """PIL's DecompressionBombError escaped the cpu pipeline; now both pipelines skip the image and say why."""
    colour_folder(tmp_path, ["a_red", "c_blue"], ["a_red", "c_blue"])
    (tmp_path / "train" / "a_red" / "huge.png").write_bytes(png_claiming(20000, 20000))
    result = read_in_subprocess(tmp_path, device)
    assert [counts[:2] for counts in result.values()] == [[1, 4], [1, 4]]  # gpu, cpu: skipped, kept
    (gpu_reason,), (cpu_reason,) = result["gpu"][2], result["cpu"][2]
    assert "its PNG header declares 20000x20000 = 400,000,000 pixels, above the limit" in gpu_reason
    assert "huge.png: Image size (400000000 pixels) exceeds limit" in cpu_reason


# ---------------------------------------------------------------- code execution


def test_cifar_batch_cannot_run_code(tmp_path):
    marker = tmp_path / "payload_ran"

    class Payload:
        def __reduce__(self):
            return open, (str(marker), "w")

    write_cifar(tmp_path, 10)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(pickle.dumps({"data": Payload(), "labels": [0]}))
    with pytest.raises(UserError, match=r"data_batch_1 is not a CIFAR file \(.*calls io\.open.*download CIFAR"):
        cifar(tmp_path, True, 10)
    assert not marker.exists()


def test_cifar_batches_with_arrays_bytes_and_numbers_still_load(tmp_path):
    write_cifar(tmp_path, 10, count=6)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    pixels = np.arange(6 * 3072).astype(np.uint8).reshape(6, 3072)
    content = {"batch_label": b"testing batch 1 of 1", "labels": [9, 8, 7, 0, 1, 2], "data": pixels,
               "filenames": [b"x.png"] * 6}  # fmt: skip
    batch.write_bytes(pickle.dumps(content, protocol=2))
    split = cifar(tmp_path, False, 10)
    assert split.labels.tolist() == [9, 8, 7, 0, 1, 2]
    assert torch.equal(split.images.reshape(6, -1), torch.from_numpy(pixels))


# ---------------------------------------------------------------- lost files


def test_export_refuses_to_overwrite_its_input_checkpoint(tmp_path, capsys):
    checkpoint = tiny_checkpoint(tmp_path / "ckpt.pt")
    before = checkpoint.read_bytes()
    line = cli_error(["export", str(checkpoint), "--output", str(checkpoint)], capsys)
    assert f"output {checkpoint} is the input {checkpoint}" in line and "choose another output path" in line
    assert checkpoint.read_bytes() == before


def test_export_refuses_a_directory(tmp_path, capsys):
    checkpoint = tiny_checkpoint(tmp_path / "ckpt.pt")
    line = cli_error(["export", str(checkpoint), "--output", str(tmp_path)], capsys)
    assert f"output {tmp_path} is a directory" in line and "give a file path" in line


def test_quantize_refuses_to_write_over_its_input(tmp_path):
    from bnext.workflows import quantize_checkpoint

    checkpoint = tiny_checkpoint(tmp_path / "quantized.pt")
    with pytest.raises(UserError, match="is the input"):
        quantize_checkpoint(checkpoint, ["8/8-4/8-4/8-8/8"], output=tmp_path)


def test_output_path_check(tmp_path):
    source = tiny_checkpoint(tmp_path / "a.pt")
    (tmp_path / "link.pt").symlink_to(source)
    for same in (tmp_path / "." / "a.pt", tmp_path / "link.pt"):
        with pytest.raises(UserError, match="writing it would destroy the input"):
            check_output_path(same, source)
    with pytest.raises(UserError, match="which is a file"):
        check_output_path(source / "model.bnx", tmp_path / "other.pt")
    assert check_output_path(tmp_path / "new.bnx", source) == tmp_path / "new.bnx"
    with pytest.raises(UserError, match="is a directory"):  # any atomic writer, e.g. a checkpoint
        tiny_checkpoint(tmp_path)


# ---------------------------------------------------------------- silently wrong labels


@pytest.mark.parametrize("pipeline", ["cpu", "gpu"])
def test_val_lacking_a_train_class_keeps_the_train_indices(tmp_path, pipeline):
    colour_folder(tmp_path, ["a_red", "b_green", "c_blue"], ["a_red", "c_blue"])
    bundle = build_data(data_config(tmp_path, pipeline), device=torch.device("cpu"))
    assert bundle.classes == ["a_red", "b_green", "c_blue"] and bundle.num_classes == 3
    mean, std = torch.tensor(bundle.mean).view(3, 1, 1), torch.tensor(bundle.std).view(3, 1, 1)
    labels_seen = []
    for images, labels, _ in bundle.val.epoch(0):
        for image, label in zip(images, labels.tolist(), strict=True):
            rgb = ((image * std + mean) * 255).mean((1, 2))
            assert torch.allclose(rgb, torch.tensor(COLOURS[bundle.classes[label]], dtype=torch.float32), atol=12)
            labels_seen.append(label)
    assert sorted(labels_seen) == [0, 0, 2, 2]


@pytest.mark.parametrize("pipeline", ["cpu", "gpu"])
def test_val_class_the_model_lacks_is_an_error(tmp_path, pipeline):
    colour_folder(tmp_path, ["a_red", "c_blue"], ["a_red", "b_green", "c_blue"])
    with pytest.raises(UserError, match=r"val has class folders the training split lacks: b_green"):
        build_data(data_config(tmp_path, pipeline), device=torch.device("cpu"))


def test_fashion_mnist_label_out_of_range_is_an_error(tmp_path):
    write_fashion_mnist(tmp_path, count=20)
    labels = np.arange(20) % 10
    labels[7] = 200
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    with pytest.raises(UserError, match=r"1 labels outside 0\.\.9 \(e\.g\. 200\) for its 10 classes"):
        fashion_mnist(tmp_path, train=True)


def test_cifar_label_out_of_range_is_an_error(tmp_path):
    write_cifar(tmp_path, 10, count=4)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [3, -1]}))
    with pytest.raises(UserError, match=r"labels outside 0\.\.9 \(e\.g\. -1\)"):
        cifar(tmp_path, False, 10)


@pytest.mark.parametrize(
    "name,kwargs,stride",
    [
        ("bnext_tiny", {"stem_stride": 1, "width_multiplier": 0.25}, 16),
        ("bnext_tiny", {"width_multiplier": 0.25}, 32),
        ("reactnet_a", {}, 32),
    ],
)
def test_input_size_check_uses_the_real_total_stride(name, kwargs, stride):
    """Stem stride x 16 (four stride-2 stages): half that (8x8 at stem stride 1) passed the old check (stem stride
    x 8), then failed deep inside; now it is refused up front."""
    model = bnext.create_model(name, num_classes=3, **kwargs)
    with pytest.raises(UserError, match=f"divisible by {stride} \\(its total stride\\)"):
        model(torch.randn(1, 3, stride // 2, stride // 2))


def test_the_smallest_input_the_check_allows_runs():
    model = bnext.create_model("bnext_tiny", num_classes=3, stem_stride=1, width_multiplier=0.25).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 16, 16)).shape == (2, 3)


@pytest.mark.parametrize("shape", [(1, 1, 32, 32), (1, 4, 32, 32), (3, 32, 32), (1, 1, 3, 32, 32)])
def test_wrong_channel_count_or_rank_is_an_error(shape):
    model = bnext.create_model("bnext_tiny", num_classes=3, width_multiplier=0.25)
    with pytest.raises(UserError, match=r"takes images of shape \(N, 3, H, W\), got"):
        model(torch.randn(shape))


# ---------------------------------------------------------------- hangs and blow-ups


# The alias structures below are "billion laughs" kept small (a few thousand leaves expanded): a regression then
# fails these tests at once instead of hanging them; the refusal does not depend on the size.


def laughs(levels: int = 4, width: int = 8) -> list:
    """A value whose expansion has width**levels leaves, held in a few hundred bytes by sharing."""
    value: list = ["lol"]
    for _ in range(levels):
        value = [value] * width
    return value


def test_yaml_aliases_are_refused_in_recipes(tmp_path):
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(3)]
    recipe = tmp_path / "laughs.yaml"
    recipe.write_text("model:\n  kwargs:\n" + "".join(f"    {line}\n" for line in lines))
    with pytest.raises(UserError, match=r"laughs.yaml is not valid YAML: anchors and aliases .* are not allowed"):
        load_config(recipe)


def test_yaml_aliases_are_refused_in_set(capsys):
    line = cli_error(["train", "--set", "model.kwargs.x=[&a [1, 2], *a, *a]"], capsys)
    assert "--set model.kwargs.x" in line and "anchors and aliases" in line


def test_shared_values_in_a_checkpoints_config_are_refused(tmp_path):
    path = tiny_checkpoint(tmp_path / "ckpt.pt", config={"model": {"kwargs": {"x": laughs()}}})
    with pytest.raises(UserError, match="the stored config shares one value in several places"):
        load_config(None, base=read_checkpoint(path)["config"])


def test_deeply_nested_yaml_is_an_error():
    with pytest.raises(UserError, match="nests too deeply"):
        load_config(None, ["model.kwargs.x=" + "[" * 1000 + "]" * 1000])


@pytest.mark.parametrize(
    "env,message",
    [
        ({"WORLD_SIZE": "2", "RANK": "2"}, r"RANK=2 is outside 0\.\.1 \(WORLD_SIZE=2\)"),
        ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "-1"}, r"LOCAL_RANK=-1 is outside 0\.\.1"),
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not an integer"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE=0 must be at least 1"),
    ],
)
def test_ddp_environment_is_checked_before_the_rendezvous(monkeypatch, env, message):
    for name in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)  # without a master address a missed check fails, never hangs
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UserError, match=message + ".*launch with torchrun"):
        init_distributed("cpu")


# ---------------------------------------------------------------- tracebacks instead of clear errors


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.epochs=abc", "config key 'train.epochs' must be an integer, got 'abc'"),
        ("train.lr=fast", "config key 'train.lr' must be a number, got 'fast'"),
        ("train.batch_size=big", "config key 'train.batch_size' must be an integer, got 'big'"),
        ("train.amp=maybe", "config key 'train.amp' must be true or false or 'auto', got 'maybe'"),
        ("train.betas=[0.9, x]", "config key 'train.betas' must be a list of numbers"),
    ],
)
def test_set_values_are_typed(override, message, capsys):
    line = cli_error(["train", "--set", override], capsys)
    assert message in line and "(the default is" in line


def test_recipe_values_are_typed_and_numbers_normalized(tmp_path):
    recipe = tmp_path / "typed.yaml"
    recipe.write_text("train:\n  lr: 1\n  epochs: 2.5\n")
    with pytest.raises(UserError, match="'train.epochs' must be an integer, got 2.5"):
        load_config(recipe)
    recipe.write_text("train:\n  lr: 1\n  temperature_decay: auto\ndata:\n  subset: null\n")
    config = load_config(recipe)
    assert type(config["train"]["lr"]) is float and config["train"]["temperature_decay"] == "auto"


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda p: p.pop("model"), "has no model weights"),
        (lambda p: p.update(version="1"), "has format version '1', not an integer"),
        (lambda p: p["card"].update(num_classes="ten"), "the model card has invalid num_classes='ten'"),
        (lambda p: p["card"].update(model=None), "the model card has invalid model=None"),
        (lambda p: p.update(config="abc"), "has a stored config that is not a mapping"),
    ],
)
def test_malformed_checkpoint_fields_are_checkpoint_errors(tmp_path, change, message):
    path = tiny_checkpoint(tmp_path / "ckpt.pt")
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=message):
        model_from_checkpoint(path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on flipped PROTO opcodes
def test_single_bit_flips_in_a_checkpoint_are_checkpoint_errors(tmp_path):
    """Flip one bit in every byte of the pickled payload (bit index cycling): each read is refused or loads."""
    path = tiny_checkpoint(tmp_path / "ckpt.pt", config={"data": {"dataset": "synthetic"}}, epoch=3)
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        entry = next(info for info in archive.infolist() if info.filename.endswith("data.pkl"))
    name_length, extra_length = struct.unpack("<HH", raw[entry.header_offset + 26 : entry.header_offset + 30])
    start = entry.header_offset + 30 + name_length + extra_length  # after the file's local zip header
    assert raw[start : start + 2] == b"\x80\x02"  # the pickle's PROTO opcode: the offset is right
    refused = 0
    flipped = tmp_path / "flipped.pt"
    for offset in range(entry.file_size):
        data = bytearray(raw)
        data[start + offset] ^= 1 << (offset % 8)
        flipped.write_bytes(data)
        try:
            read_checkpoint(flipped)
        except CheckpointError:
            refused += 1
    assert refused > entry.file_size // 4  # most flips break the pickle, its fields or the weights' SHA-256


def test_header_check_reads_jpeg_and_png_sizes(tmp_path):
    buffer = tmp_path / "small.jpg"
    Image.fromarray(np.zeros((24, 40, 3), np.uint8)).save(buffer, quality=90)
    jpeg = bytearray(buffer.read_bytes())
    assert header_size(bytes(jpeg)) == ("JPEG", 40, 24) and header_problem(bytes(jpeg)) is None
    sof = jpeg.index(b"\xff\xc0")
    assert struct.unpack(">HH", jpeg[sof + 5 : sof + 9]) == (24, 40)  # height, width as PIL wrote them
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)
    assert "JPEG header declares 60000x60000 = 3,600,000,000 pixels, above the limit" in header_problem(bytes(jpeg))
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", 0, 40)
    assert "declares 40x0 pixels" in header_problem(bytes(jpeg))
    assert header_problem(png_claiming(100, 100)) is None  # a size within the limit: PIL decodes (and refuses) it
    assert "PNG header declares 20000x20000" in header_problem(png_claiming(20000, 20000))


# The CLI arguments of the run tests.helpers.tiny_config describes (the session's trained_checkpoint).
TINY_RUN = ["--model", "bnext_tiny", "--dataset", "synthetic", "--batch-size", "16", "--epochs", "2"]
TINY_RUN += [f"--set={key}" for key in ("model.kwargs.width_multiplier=0.25", "model.kwargs.stem_stride=2")]
TINY_RUN += [f"--set={key}" for key in ("data.synthetic_size=96", "data.synthetic_classes=4", "train.threads=1")]
RESUME_DAMAGE = {
    "optimizer groups": (
        lambda p: p["optimizer"]["param_groups"].pop(),
        "its optimizer state has 1 parameter groups, this run's optimizer 2",
    ),
    "optimizer moment shape": (  # passed torch's load_state_dict, then the fused step freed a bad pointer
        lambda p: p["optimizer"]["state"][0].update(exp_avg=torch.zeros(7)),
        "its optimizer state for parameter 0 has an exp_avg that is a tensor of shape (7,) and dtype float32, "
        "for a parameter of shape",
    ),
    "torch rng size": (
        lambda p: p["rng"].update(torch=torch.zeros(10, dtype=torch.uint8)),
        "its RNG state for torch is refused (Expected a CPUGeneratorImplState",
    ),
    "torch rng dtype": (
        lambda p: p["rng"].update(torch=p["rng"]["torch"].float()),
        "its RNG state for torch is a tensor of shape (5056,) and dtype float32, not a 1-D uint8 tensor",
    ),
    "numpy rng keys": (
        lambda p: p["rng"]["numpy"].update(keys=torch.zeros(3, dtype=torch.int64)),
        "its RNG state for numpy has keys that are a tensor of shape (3,) and dtype int64, not 624 integers",
    ),
    "python rng": (
        lambda p: p["rng"].update(python=(3, (1, 2), None)),
        "its RNG state for python is not random.getstate()'s (3, 625 integers, None or a float)",
    ),
}


@pytest.mark.parametrize("case", list(RESUME_DAMAGE))
def test_resume_from_damaged_training_state_is_one_clear_line(trained_checkpoint, tmp_path, case, capsys):
    """Each was a traceback from torch, numpy or random (or a crash in the first optimizer step)."""
    change, message = RESUME_DAMAGE[case]
    payload = torch.load(trained_checkpoint(), weights_only=True)
    change(payload)
    damaged = tmp_path / "last.pt"
    torch.save(payload, damaged)
    line = cli_error(["train", *TINY_RUN, "--output", str(tmp_path / "run"), "--resume", str(damaged)], capsys)
    assert f"{damaged} cannot be resumed: {message}" in line, line
    assert "resume from another checkpoint of the run (e.g. best.pt), or start afresh without --resume" in line


@pytest.mark.parametrize(
    "content,message",
    [
        ({"data": np.zeros((4, 100), np.uint8), "labels": [0, 1, 2, 3]}, "its 'data' is an array of shape (4, 100)"),
        ({"data": np.zeros(2 * 3072, np.uint8), "labels": [0, 1]}, "its 'data' is an array of shape (6144,)"),
        ({"data": np.full((2, 3072), 300.5), "labels": [0, 1]}, "(2, 3072) and dtype float64, not an (N, 3072)"),
        ({"data": np.full((2, 3072), -1), "labels": [0, 1]}, "holds pixel values outside 0..255"),
        ({"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2]}, "holds 4 images but 3 labels"),
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [[0], [1]]}, "its 'labels' are an array of shape (2, 1)"),
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [0.5, 1.7]}, "(2,) and dtype float64, not a list of"),
    ],
    ids=["100-columns", "flat", "floats", "negative", "3-labels-for-4", "labels-2d", "float-labels"],
)
def test_cifar_batch_of_the_wrong_shape_or_type_is_an_error(tmp_path, content, message):
    """Reshape errors (or wrapped pixels, truncated labels) before; now the file and the problem are named."""
    write_cifar(tmp_path, 10, count=4)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(pickle.dumps(content))
    with pytest.raises(UserError) as caught:
        cifar(tmp_path, False, 10)
    assert str(caught.value).startswith(str(batch)) and message in str(caught.value), caught.value
    assert "delete its folder and download CIFAR again" in str(caught.value)


def test_cifar_class_names_of_the_wrong_count_are_an_error(tmp_path):
    write_cifar(tmp_path, 10, count=4)
    (tmp_path / "cifar-10-batches-py" / "batches.meta").write_bytes(pickle.dumps({"label_names": "abc"}))
    with pytest.raises(UserError, match=r"batches.meta holds label_names='abc', not the 10 class names of CIFAR-10"):
        cifar(tmp_path, False, 10)


def test_cifar_batch_of_the_wrong_shape_is_one_line_in_the_cli(tmp_path, capsys):
    write_cifar(tmp_path, 10, count=4)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(pickle.dumps({"data": np.zeros((4, 100), np.uint8), "labels": [0, 1, 2, 3]}))
    line = cli_error(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--model", "bnext_tiny"], capsys)
    assert f"{batch}: its 'data' is an array of shape (4, 100) and dtype uint8, not an (N, 3072) array" in line


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.kwargs.foo=1", "model 'bnext_tiny' takes no option 'foo' (model.kwargs.foo). Its options are "
         "elm_attention, in_channels, input_quantizer, recoupling, stem_stride, weight_quantizer, width_multiplier: "
         "remove 'foo' or use one of them"),
        ("model.kwargs.stem_stide=1", "takes no option 'stem_stide' (model.kwargs.stem_stide). Did you mean "
         "'stem_stride'? Its options are"),
        ("model.kwargs.width_multiplier=wide", "model 'bnext_tiny': option width_multiplier "
         "(model.kwargs.width_multiplier) must be a positive number, got 'wide'"),
        ("model.kwargs.elm_attention=1", "option elm_attention (model.kwargs.elm_attention) must be true or false"),
    ],
)  # fmt: skip
def test_bad_model_kwargs_name_the_model_the_key_and_the_accepted_keys(override, message, capsys):
    """A TypeError from deep inside the model's constructor before."""
    line = cli_error(["train", "--model", "bnext_tiny", "--dataset", "synthetic", "--set", override], capsys)
    assert message in line, line


def test_bad_model_kwargs_in_the_python_api_and_in_a_checkpoint_card(tmp_path):
    with pytest.raises(UserError, match=r"'reactnet_a' takes no option 'width_multiplier'.* in_channels, stem_stride"):
        bnext.create_model("reactnet_a", width_multiplier=0.5)
    with pytest.raises(UserError, match=r"'bnext18': option stem_stride .* must be 1 \(32 px inputs\) or 2"):
        bnext.create_model("bnext18", stem_stride=3)
    path = bnext.save_checkpoint(nn.Linear(2, 2), tmp_path / "ckpt.pt", card=ModelCard("bnext_tiny", 2, {"foo": 1}))
    with pytest.raises(CheckpointError, match=r"ckpt.pt names a model this bnext cannot build \(model 'bnext_tiny' "):
        model_from_checkpoint(path)


# ---------------------------------------------------------------- .bnx files (the C++ runtime's loader)
# Each crafted file loads and runs in a fresh process: the runtime must refuse it with an error naming the
# field (or, for an empty batch, return empty logits on every kernel path), never die of SIGFPE / SIGSEGV.
BNX_CASES = {
    "stride 0": ("first(g, 'binary_conv')['attrs'].update(stride=0)", "stride"),
    "2^23 output channels": ("first(g, 'binary_conv')['attrs'].update(out_channels=2**23)", "out_channels"),
    "scale shorter than the channels": ("shorten(a, first(g, 'binary_conv'), 'scale')", "scale"),
    "slope shorter than the channels": ("shorten(a, first(g, 'binary_conv'), 'slope')", "slope"),
    "3x3 conv declared 5x5": ("first(g, 'binary_conv')['attrs'].update(kernel=5)", "bits"),
    "missing stride": ("first(g, 'conv2d')['attrs'].pop('stride')", "stride"),
    "missing scale": ("first(g, 'binary_conv')['params'].pop('scale')", "scale"),
}


@pytest.mark.parametrize("case", list(BNX_CASES))
def test_crafted_bnx_is_refused_not_a_crash(case):
    edit, field = BNX_CASES[case]
    out = run_isolated(
        f"""
        import json
        import bnext_runtime
        from bnext import create_model
        from bnext.card import ModelCard
        from bnext.deploy.export import packed_model
        from bnext.deploy.fileformat import encode_bnx
        from bnext.nn import set_temperature
        model = create_model("bnext_tiny", num_classes=4, width_multiplier=0.25).eval()
        set_temperature(model, 0.0)
        header, a, _ = packed_model(model, ModelCard("bnext_tiny", 4, {{"width_multiplier": 0.25}}))
        header = json.loads(json.dumps(header))
        g = header["graph"]
        first = lambda g, kind: next(op for op in g["ops"] if op["op"] == kind)
        def shorten(a, op, role):
            a[op["params"][role]] = a[op["params"][role]][:1]
        {edit}
        try:
            bnext_runtime.load(encode_bnx(header, a))
        except bnext_runtime.ModelError as error:
            print("refused:", error)
        """
    )
    assert out.startswith("refused:") and field in out, out


def test_empty_batch_gives_empty_logits_on_every_path():
    out = run_isolated(
        """
        import numpy as np
        import bnext_runtime
        from bnext import create_model
        from bnext.card import ModelCard
        from bnext.deploy.export import packed_model
        from bnext.deploy.fileformat import encode_bnx
        from bnext.nn import set_temperature
        model = create_model("bnext_tiny", num_classes=4, width_multiplier=0.25).eval()
        set_temperature(model, 0.0)
        raw = encode_bnx(*packed_model(model, ModelCard("bnext_tiny", 4, {"width_multiplier": 0.25}))[:2])
        for path in bnext_runtime.supported_kernel_paths():
            print(path, bnext_runtime.load(raw, path)(np.zeros((0, 3, 32, 32), np.float32)).shape)
        """
    )
    assert out.count("(0, 4)") == len(out.splitlines()) >= 2, out


@pytest.mark.parametrize(
    "header,message",
    [(b'"a string"', "malformed header"), (b"[" * 10000 + b"]" * 10000, "malformed header")],
    ids=["string", "nested-10000"],
)
def test_bnx_header_that_is_not_an_object_is_refused(tmp_path, header, message):
    import hashlib

    from bnext.deploy import load
    from bnext.deploy.fileformat import MAGIC

    body = MAGIC + struct.pack("<IQ", 2, len(header)) + header
    (tmp_path / "bad.bnx").write_bytes(body + hashlib.sha256(body).digest())
    with pytest.raises(UserError, match=message):
        load(tmp_path / "bad.bnx")


def test_metrics_log_resume_drops_the_cut_line_of_a_killed_append(tmp_path: Path) -> None:
    from bnext.train.metrics import MetricsLog

    good = [{"epoch": 0, "loss": 1.5}, {"epoch": 1, "loss": 1.2}, {"epoch": 2, "loss": 1.1}]
    text = "".join(json.dumps(r) + "\n" for r in good) + '{"epoch": 3, "lo'
    (tmp_path / "metrics.jsonl").write_text(text)
    log = MetricsLog(tmp_path)
    log.resume(2)
    assert log.records == good[:2]
    assert [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == good[:2]


@pytest.mark.parametrize("damage", ["not json at all", "[1, 2]", '{"loss": 1.0}', '{"epoch": "3"}', '{"epoch": -1}'])
def test_metrics_log_resume_refuses_a_damaged_line(tmp_path: Path, damage: str) -> None:
    from bnext.train.metrics import MetricsLog

    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"epoch": 0}) + "\n" + damage + "\n" + json.dumps({"epoch": 1}) + "\n")
    with pytest.raises(UserError, match=r"metrics.jsonl: line 2 is not an epoch record.*move it away"):
        MetricsLog(tmp_path).resume(2)
    assert path.read_text().splitlines()[1] == damage  # nothing was rewritten
