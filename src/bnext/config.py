"""Training configuration: defaults, YAML recipes and ``--set key=value`` overrides.

A config is a nested dict. Every key a recipe or an override names must exist
in ``DEFAULTS`` (a typo is an error with a suggestion, not a silent no-op), and its
value must have the key's type (``SCHEMA``), checked when the config is loaded.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import json
import re
import reprlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from bnext.errors import UserError

DEFAULTS: dict[str, Any] = {
    "model": {
        "name": "bnext_tiny",
        "kwargs": {},  # passed to bnext.create_model (stem_stride, width_multiplier, elm_attention, ...)
    },
    "data": {
        "dataset": "fashion-mnist",  # imagenet | cifar10 | cifar100 | fashion-mnist | folder | synthetic
        "data_dir": None,
        "download": False,  # torchvision datasets: download when missing (needs network)
        "subset": None,  # first N training images, for quick runs
        "image_size": 32,
        "augment": "cifar",  # cifar (pad-4 crop + flip) | imagenet (RRC + flip + RandAugment) | none
        "randaugment": "rand-m7-mstd0.5",  # timm string; "" turns RandAugment off
        "mixup": 0.0,  # mixup alpha (0 = off)
        "cutmix": 0.0,  # cutmix alpha (0 = off)
        "repeated_aug": 1,  # repeated augmentation count (1 = off)
        "num_workers": 2,  # loader processes (with pipeline gpu they only read file bytes)
        # imagenet / folder datasets: gpu = decode (nvJPEG) and augment in batches on the training device,
        # cpu = PIL + torchvision / timm in the workers; auto = gpu when training on CUDA
        "pipeline": "auto",
        "synthetic_size": 512,  # images per split of the synthetic dataset
        "synthetic_classes": 10,
    },
    "train": {
        "epochs": 10,
        "batch_size": 128,  # global batch (split over DDP ranks)
        "lr": 1e-3,
        "betas": [0.99, 0.999],
        "weight_decay_conv": 1e-8,  # every 4-D parameter (authors' code)
        "weight_decay_other": 1e-3,
        "warmup_epochs": 5,
        "warmup_lr": 1e-5,
        "min_lr": 1e-7,
        "clip_grad": 5.0,
        "temperature_decay": 0.9,  # per epoch; "auto" reaches exact sign by the end of a short run
        "temperature_per_step": False,  # decay smoothly within the epoch instead of at its boundary
        "lr_per_step": False,  # follow the warmup + cosine within the epoch (timm's t_in_epochs=False) for short runs
        "bn_recalibration_batches": 0,  # re-estimate BatchNorm statistics on N train batches before eval
        "label_smoothing": 0.0,
        "device": "auto",  # auto (CUDA when present) | cpu | cuda
        "amp": "auto",  # auto (on for CUDA, off on CPU) | true | false (false: the authors' fp32 training)
        "amp_dtype": "auto",  # auto (bf16 where native: bf16 GPUs, AVX512_BF16/AMX CPUs; fp16 older GPUs) | bf16 | fp16
        "channels_last": False,
        "compile": "auto",  # auto (on for CUDA) | true | false
        "compile_mode": "auto",  # auto (reduce-overhead for inputs <= 64 px on CUDA) | default | reduce-overhead | ...
        "deterministic": False,  # deterministic cuDNN / cuBLAS: a resumed CUDA run is bit-exact (slower)
        "log_every": 25,  # steps between reads of the on-device loss / accuracy (progress bar, NaN check)
        "ema_decay": 0.0,  # EMA of weights (0 = off)
        "seed": 0,
        "eval_every": 1,
        "threads": None,  # torch CPU threads (None = torch's default)
    },
    "distill": {
        "mode": "none",  # none | kd | gap_sensitive
        "strong": None,
        "assistants": [],
        "teacher_amp": True,  # teachers under autocast where the hardware runs it natively (as train.amp_dtype auto)
        "weighting": "instance",  # gap-sensitive weights: instance (paper Eq. 4) | authors_code (their script)
        "hard_label_weight": 0.0,  # alpha: loss = (1 - alpha) KD + alpha CE(labels); 0 = KD only (the paper)
        # auto: when the training images do not change between epochs (in-memory data, no augmentation),
        # run the teachers once over the training set and look their logits up per sample | true | false
        "tabulate_teachers": "auto",
    },
    "output": "runs/default",
    "tensorboard": False,
}


# Keys whose type their default does not give (a None default, or "auto" beside a bool or number) and the
# lists; every other key takes its default's type. A kind is a type, a list[type], None or a literal string.
_TYPES: dict[str, tuple[Any, ...]] = {
    "data.data_dir": (str, None),
    "data.subset": (int, None),
    "data.randaugment": (str, None),  # "" or null: off
    "train.betas": (list[float],),
    "train.temperature_decay": (float, "auto"),
    "train.amp": (bool, "auto"),
    "train.compile": (bool, "auto"),
    "train.threads": (int, None),
    "distill.strong": (str, None),
    "distill.assistants": (list[str],),
    "distill.tabulate_teachers": (bool, "auto"),
}
_KIND_NAMES = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    None: "null",
    list[float]: "a list of numbers",
    list[str]: "a list of strings",
}


def _flatten(defaults: Mapping[str, Any], path: str = "") -> dict[str, tuple[Any, ...]]:
    schema: dict[str, tuple[Any, ...]] = {}
    for key, value in defaults.items():
        dotted = f"{path}{key}"
        if isinstance(value, dict) and key != "kwargs":
            schema.update(_flatten(value, dotted + "."))
        else:
            schema[dotted] = _TYPES.get(dotted, (type(value),))
    return schema


SCHEMA: dict[str, tuple[Any, ...]] = _flatten(DEFAULTS)
"""The kinds of value each dotted key takes (``model.kwargs`` is free-form: a dict of model arguments)."""


def _is_kind(value: Any, kind: Any) -> bool:
    if kind is None or isinstance(kind, str):
        return value == kind
    if kind in (int, float) and isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, int | float)
    if getattr(kind, "__origin__", None) is list:
        return isinstance(value, list) and all(_is_kind(item, kind.__args__[0]) for item in value)
    return isinstance(value, kind)


def _check_value(dotted: str, value: Any) -> Any:
    """``value`` as config key ``dotted`` takes it (an int for a float key becomes a float); UserError otherwise."""
    kinds = SCHEMA[dotted]
    if not any(_is_kind(value, kind) for kind in kinds):
        raise UserError(
            f"config key {dotted!r} must be {' or '.join(_KIND_NAMES.get(k, repr(k)) for k in kinds)}, got "
            f"{reprlib.repr(value)}: fix the recipe or the --set value (the default is "
            f"{json.dumps(_lookup(DEFAULTS, dotted))})"
        )
    return float(value) if float in kinds and type(value) is int else value


def _lookup(config: Mapping[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        config = config[part]
    return config


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _coerce(value: Any) -> Any:
    """YAML 1.1 reads ``3e-3`` (no dot) as a string; read such strings as floats."""
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [_coerce(v) for v in value]
    if isinstance(value, dict):
        return {k: _coerce(v) for k, v in value.items()}
    return value


def _merge(base: dict[str, Any], update: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    for key, value in update.items():
        dotted = f"{path}{key}"
        if key not in base:
            close = difflib.get_close_matches(key, list(base), n=1) if isinstance(key, str) else []
            hint = f" (did you mean {path}{close[0]}?)" if close else ""
            raise UserError(f"unknown config key {dotted!r}{hint}")
        if isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                raise UserError(f"config key {dotted!r} must be a mapping, got {reprlib.repr(value)}")
            if key == "kwargs":  # free-form: model arguments are not known in advance
                base[key] = {**base[key], **_coerce(copy.deepcopy(dict(value)))}
            else:
                _merge(base[key], value, dotted + ".")
        else:
            base[key] = _check_value(dotted, _coerce(copy.deepcopy(value)))
    return base


_MAX_DEPTH = 16


def _check_tree(value: Any, source: str) -> None:
    """Refuse a config that is not a plain tree: a list or dict reached twice (a YAML alias or a pickle
    back-reference: nested ones expand exponentially, the "billion laughs") or nested deeper than ``_MAX_DEPTH``.

    Walks each container once, so a hostile value costs time linear in its size.
    """
    seen: set[int] = set()
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        if id(item) in seen or depth > _MAX_DEPTH:
            problem = "shares one value in several places" if id(item) in seen else f"nests deeper than {_MAX_DEPTH}"
            raise UserError(f"{source} {problem}: a config is a plain tree of values; write each value out")
        seen.add(id(item))
        stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))


class _TreeLoader(yaml.SafeLoader):
    """``yaml.safe_load`` without anchors and aliases (``&name`` / ``*name``): nested aliases let a few hundred
    bytes expand into gigabytes (the "billion laughs"), and a config never needs them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.MarkedYAMLError(
                problem="anchors and aliases (&name, *name) are not allowed: write each value out",
                problem_mark=event.start_mark,
            )
        return super().compose_node(parent, index)


def _read_yaml(text: str, source: str) -> Any:
    """Parse config YAML (safe types only, no anchors or aliases); a UserError naming ``source`` if it is not."""
    try:
        return yaml.load(text, Loader=_TreeLoader)  # a SafeLoader: safe types only
    except RecursionError as error:
        raise UserError(f"{source} nests too deeply: a config nests a few levels at most") from error
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise UserError(f"{source} is not valid YAML: {getattr(error, 'problem', None) or error}{where}") from error


def add_set_argument(
    parser: argparse.ArgumentParser,
    help: str = "override a config key (repeatable)",
    flag: str = "--set",
    dest: str = "overrides",
) -> None:
    """The ``--set KEY=VALUE`` option every command shares; values land in ``args.overrides``."""
    parser.add_argument(flag, dest=dest, action="append", default=[], metavar="KEY=VALUE", help=help)


def parse_override(text: str) -> dict[str, Any]:
    """``a.b=3`` -> ``{"a": {"b": 3}}`` with the value parsed as YAML."""
    if "=" not in text:
        raise UserError(f"--set takes key=value, got {text!r}")
    key, raw = text.split("=", 1)
    value = _read_yaml(raw, f"--set {key}: the value {reprlib.repr(raw)}") if raw else None
    nested: dict[str, Any] = {}
    cursor = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


RECIPES = Path(__file__).resolve().parent / "recipes"
"""The recipes shipped with the package (``bnext recipes`` lists them)."""


def list_recipes() -> list[str]:
    """Names of the shipped recipes, e.g. ``imagenet/bnext_tiny``."""
    return sorted(str(p.relative_to(RECIPES).with_suffix("")) for p in RECIPES.rglob("*.yaml"))


def resolve_recipe(spec: str | Path) -> Path:
    """A YAML file: ``spec`` itself when it exists, else the shipped recipe it names.

    ``imagenet/bnext_tiny``, ``imagenet/bnext_tiny.yaml`` and the checkout path
    ``configs/imagenet/bnext_tiny.yaml`` all name the same shipped recipe, so
    commands work the same from a checkout and from an installed wheel.
    """
    path = Path(spec)
    if path.is_file():
        return path
    name = str(spec).removeprefix("configs/").removesuffix(".yaml")
    shipped = RECIPES / f"{name}.yaml"
    if shipped.is_file():
        return shipped
    close = difflib.get_close_matches(name, list_recipes(), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise UserError(f"config {spec} is neither a file nor a shipped recipe{hint}: `bnext recipes` lists them")


def load_config(
    path: str | Path | None = None, overrides: Iterable[str] = (), base: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """DEFAULTS, then ``base`` (e.g. the config stored in a checkpoint), then the YAML recipe
    at ``path`` (if any), then each ``key=value`` override; every value checked against ``SCHEMA``."""
    config = copy.deepcopy(DEFAULTS)
    if base:
        _check_tree(base, "the stored config")
        _merge(config, base)
    if path is not None:
        path = resolve_recipe(path)
        recipe = _read_yaml(path.read_text(), f"config file {path}") or {}
        if not isinstance(recipe, Mapping):
            raise UserError(f"config file {path} must hold a mapping at the top level")
        _merge(config, recipe)
    for text in overrides:
        _merge(config, parse_override(text))
    return config
