"""Run a ``.bnx`` packed model: ``bnext.deploy.load(path)(images) -> logits``.

The model is rebuilt from the registry and every BNext unit's main branch is swapped
for :class:`PackedBinaryConv` (shift + sign + bit packing, XNOR/popcount conv, folded
BatchNorm + PReLU in the kernel epilogue), and the fp ops around it are regrouped
(``bnext.deploy.fused_unit``); stem, pooling and classifier run as ordinary torch eval
ops on channels_last tensors. PTQ layers get their weights back from the stored integer codes
(the same arithmetic as their fake quantization) and keep their activation quantizers.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from bnext.card import card_from_payload
from bnext.deploy import kernels
from bnext.deploy.fileformat import Entry, read_bnx
from bnext.deploy.fused_unit import fuse_units
from bnext.deploy.packing import border_sums, kernel_panels, pad_channels, unpack_codes, unpack_signs
from bnext.errors import UserError
from bnext.models import create_model
from bnext.models.bnext import Stem
from bnext.nn.info_rcp import BinaryUnit
from bnext.quant import quantize_model
from bnext.quant.layers import QuantizedMixin


class PackedBinaryConv(nn.Module):
    """``PReLU(BN(conv(sign(x + input_shift), sign(w))))`` on bit-packed activations and weights."""

    def __init__(self, entries: dict[str, Entry], prefix: str, kernel_path: str | None = None) -> None:
        super().__init__()
        bits = entries[f"{prefix}.weight"]
        self.shape = tuple(bits.meta["shape"])
        self.stride = int(bits.meta["stride"])
        self.padding = int(bits.meta["padding"])
        self.bits = bits.array
        out_channels = self.shape[0]
        tensor = {key: torch.from_numpy(entries[f"{prefix}.{key}"].array) for key in ("input_shift", "scale", "shift")}
        slope = torch.from_numpy(entries[f"{prefix}.slope"].array)
        self.register_buffer("input_shift", tensor["input_shift"], persistent=False)
        self.register_buffer("border_sums", border_sums(bits.array, self.shape[1]), persistent=False)
        self.register_buffer("scale", pad_channels(tensor["scale"], 1.0), persistent=False)
        self.register_buffer("shift", pad_channels(tensor["shift"]), persistent=False)
        self.register_buffer("slope", pad_channels(slope, 1.0), persistent=False)
        self.out_channels = out_channels
        self.path = kernels.runnable_path_code(kernel_path)
        self.register_buffer("panels", kernels.kernel_weights(kernel_panels(bits.array), self.path), persistent=False)
        self._bind_kernel_arguments()

    def _bind_kernel_arguments(self) -> None:
        """The kernel calls' arguments as plain tuples: reading the buffers through ``nn.Module`` attribute
        lookup on every call cost ~10 us (measured on a 128-channel 1x1 conv at 28 px: 110 -> 100 us)."""
        out_channels, channels, kh, kw = self.shape
        self._pack_args = (self.input_shift, self.path)
        self._conv_args = (
            self.panels, self.border_sums, channels, out_channels, kh, kw,
            self.stride, self.padding, self.scale, self.shift, self.slope, self.path,
        )  # fmt: skip

    def _apply(self, fn, recurse: bool = True):
        module = super()._apply(fn, recurse)
        self._bind_kernel_arguments()  # .to() / .float() replaced the buffers
        return module

    def kernel_arguments(self) -> tuple:
        """``(input_shift, *binary_conv's arguments)``: what the C++ ``PackedUnit`` binds for this conv."""
        return (self.input_shift, *self._conv_args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ext = kernels.extension()
        if ext is None or x.device.type != "cpu":
            return self.reference(x)
        return ext.binary_conv(ext.pack_activations(x.float(), *self._pack_args), *self._conv_args)

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The same result with float torch ops (no compiler, or CUDA tensors)."""
        o = self.out_channels
        signs = unpack_signs(self.bits, self.shape).to(x.device)
        buffers = [b.to(x.device) for b in (self.input_shift, self.scale[:o], self.shift[:o], self.slope[:o])]
        return kernels.reference_binary_conv(x.float(), buffers[0], signs, self.stride, self.padding, *buffers[1:])

    def extra_repr(self) -> str:
        return f"{self.shape[1]}, {self.shape[0]}, kernel_size={self.shape[2]}, stride={self.stride}, packed"


class PackedModel(nn.Module):
    """NCHW float images in (any batch size), logits out; runs in eval mode on channels_last memory."""

    def __init__(self, model: nn.Module, header: dict) -> None:
        super().__init__()
        self.model = model.eval()
        self.header = header

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images.float().contiguous(memory_format=torch.channels_last))


def _restore_quantized(model: nn.Module, entries: dict[str, Entry]) -> set[str]:
    """Quantized layers' weights from their codes: ``(codes / alpha + beta) * scale`` per output channel."""
    restored = set()
    for name, module in model.named_modules():
        if isinstance(module, QuantizedMixin) and module.weight_bits is not None:
            codes = entries.pop(f"{name}.weight")
            parts = {k: torch.from_numpy(entries.pop(f"{name}.weight_{k}").array) for k in ("alpha", "beta", "scale")}
            values = unpack_codes(codes.array, codes.meta["bits"], tuple(codes.meta["shape"]))
            module.load_integer_weight(values, parts["alpha"], parts["beta"], parts["scale"])
            restored.add(f"{name}.weight")
    return restored


def load(path: str | Path, kernel_path: str | None = None) -> PackedModel:
    """The callable packed model of a ``.bnx`` file.

    ``kernel_path`` forces one of :func:`bnext.deploy.kernels.supported_paths` ("avx512", "avx512bw", "avx2",
    "portable"); None takes the fastest this CPU runs.
    """
    header, entries = read_bnx(path)
    return build_packed_model(header, entries, kernel_path, source=str(path))


def build_packed_model(
    header: dict, entries: dict[str, Entry], kernel_path: str | None = None, source: str = "the packed model"
) -> PackedModel:
    """A :class:`PackedModel` from a header and stored tensors (as read from a file or made in memory)."""
    entries = dict(entries)
    if header.get("format") != "bnext-packed":
        raise UserError(f"{source} is not a bnext packed model (format {header.get('format')!r})")
    card = card_from_payload(header)
    if card is None:
        raise UserError(f"{source} does not name its model: export it again with `bnext export`")
    model = create_model(card.model, **card.create_kwargs())
    if header.get("quant_config"):
        quantize_model(model, header["quant_config"])
    model.eval()
    names = {id(module): name for name, module in model.named_modules()}
    for name, unit in [(n, m) for n, m in model.named_modules() if isinstance(m, BinaryUnit)]:
        prefix = names[id(unit.main_branch_modules().conv)]
        if f"{prefix}.weight" not in entries:
            raise UserError(f"{source} lacks the packed weights of {name}: it was exported from another model")
        unit.replace_main_branch(PackedBinaryConv(entries, prefix, kernel_path))
        for key in ("weight", "input_shift", "scale", "shift", "slope"):
            entries.pop(f"{prefix}.{key}")
    restored = _restore_quantized(model, entries)
    state = {name: torch.from_numpy(entry.array) for name, entry in entries.items()}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:
        detail = str(error).splitlines()[1].strip() if "\n" in str(error) else str(error)
        raise UserError(f"{source} does not fit {card.model} {card.create_kwargs()}: {detail}") from error
    if result.unexpected_keys:
        raise UserError(f"{source} holds tensors this model does not have: {result.unexpected_keys[:5]}")
    expected_missing = set(header.get("dropped_state", [])) | restored
    missing = [k for k in result.missing_keys if k not in expected_missing and not k.endswith("temperature")]
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing:
        raise UserError(f"{source} lacks tensors of this model: {missing[:5]}; export it again")
    fuse_units(model)
    for stem in [m for m in model.modules() if isinstance(m, Stem)]:
        stem.fold_batchnorm()
    return PackedModel(model, header)
