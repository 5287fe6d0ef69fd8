"""Small datasets held in memory as one uint8 tensor: Fashion-MNIST, CIFAR-10/100, synthetic."""

from __future__ import annotations

import gzip
import pickle
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bnext.data.labels import check_labels
from bnext.errors import UserError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


@dataclass
class ArraySplit:
    """Images as uint8 (N, C, H, W) and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError("images must be a uint8 tensor of shape (N, C, H, W)")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def head(self, count: int | None) -> ArraySplit:
        """The first ``count`` samples (all when None)."""
        if count is None:
            return self
        return ArraySplit(self.images[:count], self.labels[:count], self.classes)


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (plain or gzip), the format of (Fashion-)MNIST."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise UserError(f"cannot read {path}: {error} (re-install or re-download the dataset)") from error
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UserError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise UserError(f"{path} is truncated: expected {int(np.prod(shape))} values, found {body.size}")
    return body.reshape(shape)


def find_idx(root: Path, stem: str) -> Path | None:
    """The IDX file ``stem`` (or ``stem.gz``) under ``root`` in Debian's or torchvision's layout, or None."""
    for folder in (root, root / "FashionMNIST" / "raw", root / "raw"):
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def fashion_mnist(root: str | Path | None, train: bool, image_size: int = 32) -> ArraySplit:
    """Fashion-MNIST from IDX files (Debian's package or torchvision's layout), as 3-channel images.

    The 28 px grey images are zero-padded to 32 px (resized when ``image_size``
    is not 32) and repeated over three channels.
    """
    root = Path(root) if root else DEBIAN_FASHION_MNIST
    prefix = "train" if train else "t10k"
    image_file = find_idx(root, f"{prefix}-images-idx3-ubyte")
    label_file = find_idx(root, f"{prefix}-labels-idx1-ubyte")
    if image_file is None or label_file is None:
        raise UserError(
            f"Fashion-MNIST {prefix} files not found under {root} (looked for {prefix}-images-idx3-ubyte[.gz] "
            "there and in FashionMNIST/raw/). Install them with `apt-get install dataset-fashion-mnist` "
            "or point data.data_dir at a torchvision FashionMNIST root."
        )
    images = torch.from_numpy(_read_idx(image_file).copy()).unsqueeze(1)
    labels = torch.from_numpy(_read_idx(label_file).astype(np.int64))
    check_labels(labels, len(FASHION_MNIST_CLASSES), str(label_file))
    images = F.pad(images, (2, 2, 2, 2))
    if image_size != 32:
        images = F.interpolate(images.float(), size=image_size, mode="bilinear").round().clamp(0, 255).byte()
    return ArraySplit(images.expand(-1, 3, -1, -1).contiguous(), labels, list(FASHION_MNIST_CLASSES))


_NOT_CIFAR = "the file is damaged or not a CIFAR file; delete its folder and download CIFAR again"
_CIFAR_LAYOUT = {
    10: (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        "batches.meta",
        "labels",
        "label_names",
    ),
    100: ("cifar-100-python", ["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Builds what CIFAR files hold (numpy arrays, lists, dicts, bytes, numbers) and nothing else.

    A pickle names the functions it calls to rebuild objects; any name outside numpy's array
    rebuilders is refused, so a planted file cannot run code.
    """

    _ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),  # numpy.core: numpy 1's name, numpy._core: numpy 2's
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
            ("_codecs", "encode"),  # bytes in protocol-2 pickles
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"it calls {module}.{name}, which no CIFAR file does (it may be malicious)")
        return super().find_class(module, name)


def _unpickle(path: Path, *keys: str) -> list[Any]:
    """The values under ``keys`` of the dict a CIFAR pickle holds, read through ``_ArrayUnpickler``."""
    try:
        with path.open("rb") as handle:
            content = _ArrayUnpickler(handle, encoding="latin1").load()
        return [content[key] for key in keys]
    except Exception as error:  # a damaged or hostile pickle fails in many ways
        reason = f"{type(error).__name__}: {error}"
        raise UserError(f"{path} is not a CIFAR file ({reason}): download CIFAR again") from error


def cifar(root: str | Path | None, train: bool, num_classes: int, download: bool = False) -> ArraySplit:
    """CIFAR-10/100 from torchvision's layout (``cifar-10-batches-py`` / ``cifar-100-python`` pickles).

    ``download=True`` fetches the archive through torchvision first (needs network).
    """
    if root is None:
        raise UserError(f"cifar{num_classes} needs data.data_dir (the folder that holds torchvision's files)")
    folder_name, train_files, test_files, meta_file, label_key, names_key = _CIFAR_LAYOUT[num_classes]
    folder = Path(root) / folder_name
    if download and not folder.is_dir():
        import torchvision

        cls = torchvision.datasets.CIFAR10 if num_classes == 10 else torchvision.datasets.CIFAR100
        try:
            cls(str(root), train=train, download=True)
        except Exception as error:
            raise UserError(f"downloading CIFAR-{num_classes} into {root} failed ({error}): are you online?") from error
    names = train_files if train else test_files
    missing = [name for name in [*names, meta_file] if not (folder / name).is_file()]
    if missing:
        raise UserError(
            f"CIFAR-{num_classes} not found under {root}: missing {folder_name}/{missing[0]}. Put torchvision's "
            "files there or pass --set data.download=true when online."
        )
    batches = [_cifar_batch(folder / name, label_key) for name in names]
    data = np.concatenate([images.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32) for images, _ in batches])
    labels = torch.from_numpy(np.concatenate([batch.astype(np.int64, copy=False) for _, batch in batches]))
    (classes,) = _unpickle(folder / meta_file, names_key)
    if not (isinstance(classes, list) and len(classes) == num_classes and all(isinstance(c, str) for c in classes)):
        raise UserError(
            f"{folder / meta_file} holds {names_key}={reprlib.repr(classes)}, not the {num_classes} class names of "
            f"CIFAR-{num_classes}: {_NOT_CIFAR}"
        )
    check_labels(labels, len(classes), f"CIFAR-{num_classes} under {folder}")
    return ArraySplit(torch.from_numpy(data), labels, list(classes))


def _cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR batch's images, (N, 3072) integers in 0..255, and N integer labels: checked, as the file is untrusted."""
    images, labels = (_as_array(value) for value in _unpickle(path, "data", label_key))
    if images is None or images.dtype.kind not in "ui" or images.ndim != 2 or images.shape[1] != 3 * 32 * 32:
        raise UserError(f"{path}: its 'data' is {_describe(images)}, not an (N, 3072) array of bytes: {_NOT_CIFAR}")
    if images.dtype != np.uint8 and images.size and (images.min() < 0 or images.max() > 255):
        raise UserError(f"{path} holds pixel values outside 0..255: {_NOT_CIFAR}")
    if labels is None or labels.dtype.kind not in "ui" or labels.ndim != 1:
        raise UserError(f"{path}: its {label_key!r} are {_describe(labels)}, not a list of class indices: {_NOT_CIFAR}")
    if len(labels) != len(images):
        raise UserError(f"{path} holds {len(images)} images but {len(labels)} {label_key}: {_NOT_CIFAR}")
    return images, labels


def _as_array(value: object) -> np.ndarray | None:
    """``value`` as a numpy array, or None when it is not one (e.g. ragged nested lists)."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError):
        return None


def _describe(array: np.ndarray | None) -> str:
    return "not an array" if array is None else f"an array of shape {array.shape} and dtype {array.dtype}"


def synthetic(count: int, num_classes: int, image_size: int, seed: int) -> ArraySplit:
    """Learnable generated images: a fixed random template per class plus noise and a random shift."""
    generator = torch.Generator().manual_seed(1234)  # templates shared by train and val
    templates = torch.rand(num_classes, 3, image_size, image_size, generator=generator) * 255
    sample_gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (count,), generator=sample_gen)
    noise = torch.randn(count, 3, image_size, image_size, generator=sample_gen) * 40
    images = (templates[labels] + noise).clamp(0, 255).byte()
    return ArraySplit(images, labels, [f"class_{i}" for i in range(num_classes)])
