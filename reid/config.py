"""Configuration: YAML with ``_base_`` inheritance, dotted command-line overrides, one schema.

The schema is :data:`DEFAULTS` below, plus the signatures of registered components: the sections
``dataset`` and ``model`` and each entry of ``losses`` name a component (``name: ...``) and may set
exactly the keyword arguments its constructor accepts (a nested ``backbone: {name: ...}`` is checked
against the backbone registry the same way). Every key is validated: an unknown key or a value of
the wrong type is a :class:`ConfigError` naming the file, the key and the closest valid key.

Inheritance: ``_base_: path`` or a list of paths (relative to the file). Bases are merged in order,
then the file itself; dicts merge key by key, other values replace. A dict containing
``_delete_: true`` replaces the inherited dict instead of merging into it. A loss set to ``null``
is removed.
"""
from __future__ import annotations

import ast
import copy
import inspect
import os
import re
import sys
import typing
from pathlib import Path
from typing import Any, Iterable

import yaml

from .registry import BACKBONES, DATASETS, LOSSES, MODELS, ConfigError, Registry, closest, suggestion

__all__ = ["DEFAULTS", "Config", "ConfigError", "load_config", "save_config", "parse_overrides", "reference_for"]

CLI = "command line"

#: The schema of every non-component section, with its defaults.
DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "output_dir": "outputs/run",
    "device": "auto",  # auto | cpu | cuda | cuda:N
    "dataset": {"name": "synthetic"},  # component: DATASETS
    "input": {
        "size": [256, 128],  # (height, width) fed to the network
        "pixel_mean": [0.485, 0.456, 0.406],
        "pixel_std": [0.229, 0.224, 0.225],
        "interpolation": "bilinear",  # used when decoding into the image store
    },
    "augment": {
        "crop": "upscale",  # upscale (images stored resized by crop_scale, random crop) | pad | none
        "crop_scale": 1.125,
        "crop_prob": 1.0,  # upscale: a sample not cropped is the whole stored image, nearest-resampled
        "pad": 10,
        "flip_prob": 0.5,
        "color_jitter": {
            "prob": 0.0,
            "brightness": 0.0,
            "contrast": 0.0,
            "saturation": 0.0,
            "hue": 0.0,
        },
        "erasing": {  # RandomErasing (Zhong et al.), after normalisation as in the released codes
            "prob": 0.0,
            "area": [0.02, 0.4],  # box area fraction, uniform
            "aspect": 0.3,  # box height / width in [aspect, 1 / aspect]
            "aspect_sampling": "uniform",  # uniform (the releases) | log_uniform (torchvision)
            "attempts": 100,  # candidate boxes per sample; none fits -> nothing erased
            "fill": "mean",  # mean (0 normalised) | constant (fill_value) | random (N(0, 1)) | zero (black)
            "fill_value": [0.0, 0.0, 0.0],  # constant: the value in normalised units (RandomErasing's mean=)
        },
    },
    "sampler": {  # P identities x K images per batch
        "num_ids": 16,
        "num_instances": 4,
        "epoch": "images",  # images (a pass over the images in chunks of K) | identities (each identity once)
        "last_batch": "drop",  # identities mode, leftover identities: drop | keep (one smaller last batch)
        # images mode, fewer than P identities with chunks left: top_up (reid: fill the batch with other
        # identities, a fixed number of batches) | stop (BoT's release: end the epoch there)
        "exhausted": "top_up",
    },
    "data": {
        "cache_dir": ".cache/reid",  # decoded image stores and generated data sets
        "workers": 4,  # threads decoding images into the store
        "on_device": "auto",  # keep the training images on the GPU: auto | true | false
    },
    "model": {"name": "bot"},  # component: MODELS
    "losses": {  # label -> component: LOSSES (+ weight); null removes an inherited loss
        "ce": {"name": "cross_entropy", "weight": 1.0},
        "triplet": {"name": "triplet", "weight": 1.0},
    },
    "optimizer": {
        "name": "adam",  # adam | adamw | sgd
        "lr": 3.5e-4,
        "weight_decay": 5e-4,
        "momentum": 0.9,
        "nesterov": False,
        "betas": [0.9, 0.999],
        "amsgrad": False,
        "lr_mults": {},  # parameter group -> lr multiplier, e.g. {backbone: 0.1}
        "bias_weight_decay": True,
    },
    "schedule": {
        "name": "multistep",  # multistep | cosine | constant
        "warmup_epochs": 10,
        "warmup_start_lr": 3.5e-6,  # absolute lr at the start of the linear warmup
        "milestones": [40, 70],
        "gamma": 0.1,
        "factors": [],  # multistep: lr factor before milestone 1, ..., after the last (replaces gamma)
        "min_lr": 0.0,  # cosine floor
    },
    "train": {
        "epochs": 120,
        "iters_per_epoch": 0,  # 0: one pass of the identity sampler
        "amp": "auto",  # auto (bf16 on CUDA, off on CPU) | off | bf16 | fp16
        "grad_clip": 0.0,  # max global grad norm; 0 disables
        "log_period": 20,  # iterations between log lines
        "eval_period": 0,  # epochs between evaluations; 0 evaluates at the end only
        "checkpoint_period": 1,  # epochs between 'last' checkpoints
        "channels_last": False,
        "compile": False,
        # activation checkpointing: modules (name patterns, e.g. "branches.*.stages") whose activations
        # are recomputed in backward instead of kept (memory for time; see docs/model_zoo.md)
        "checkpoint_modules": [],
        "eval_before": False,  # evaluate the untrained model first (printed as 'before')
        "select_on": "test",  # which metrics pick checkpoints/best.pth: test | val (held-out train images)
        "select_metric": "mAP",  # the number that picks checkpoints/best.pth: mAP | rank1 (BDB's release)
        # emulate nn.DataParallel over N GPUs inside each batch (the releases' multi-GPU runs): BatchNorm
        # statistics per shard of B/N images (running statistics from the first shard only, as
        # DataParallel kept replica 0's) and per-replica random draws (BDB's drop band) per shard.
        # Under DDP with W processes each process takes N / W shards of its batch. 1: off
        "shards": 1,
        "sync_bn": False,  # DDP: batch-norm statistics over the global batch (SyncBN)
        "gather_outputs": True,  # DDP: losses (triplet mining, CE) over the gathered global batch
        "find_unused_parameters": False,  # DDP: for models with outputs no loss uses
        "dtype": "float32",  # float32 | float64 (exact numerics checks, e.g. DDP equivalence; slow)
    },
    "reference": {  # published numbers of this experiment, shown beside ours (percent)
        "rank1": None,  # for the config's own data set (number or null)
        "mAP": None,
        "datasets": {},  # or per data set name: {rank1, mAP} (e.g. a ladder run on several sets); not both
        "step_time": None,  # seconds per training batch, where the paper reports it (ablation time tables)
        "source": "",
    },
    "test": {
        "batch_size": 128,
        "flip": False,  # average features of the image and its mirror
        "normalize": True,  # L2-normalise features
        # normalize: L2-normalise each of this many equal consecutive slices of the feature on its own
        # (PCB's release: 6, each pooled 2,048-D stripe); 1: the whole vector
        "norm_parts": 1,
        "metric": "cosine",  # cosine | euclidean | sqeuclidean (squared Euclidean, PCB's release)
        "max_rank": 50,
        "rerank": False,
        "aqe": False,
    },
}

#: Sections whose keys come from a registered component's signature.
COMPONENT_SECTIONS: dict[str, Registry] = {"dataset": DATASETS, "model": MODELS}
#: Component keyword arguments that are themselves a component section.
NESTED_COMPONENTS: dict[str, Registry] = {"backbone": BACKBONES}
#: Keys a loss entry takes besides its constructor's keywords.
LOSS_EXTRA_KEYS = {"name": "", "weight": 1.0}


# ---------------------------------------------------------------------------- value checks


def _num(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


class Range:
    """Numbers in ``[lo, hi]`` (an open end excluded; ``None``: unbounded)."""

    def __init__(self, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
                 hi_open: bool = False):
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open

    def ok(self, value: Any) -> bool:
        if value != value:  # NaN
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)

    def bound(self) -> str:
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        return (f"in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}"
                f"{')' if self.hi_open else ']'}")

    def expects(self, default: Any = None) -> str:
        kind = "an integer" if isinstance(default, int) and not isinstance(default, bool) else "a number"
        return f"{kind} {self.bound()}"

    def hint(self, value: Any) -> str:
        return ""


class Choice:
    """One of a fixed set of values (strings; ``types`` widens the accepted YAML types). The same
    check applies to a component keyword annotated ``Literal[...]`` (:func:`literal_choices`)."""

    def __init__(self, *values: Any, types: tuple[type, ...] | None = None, text: str = "",
                 aliases: dict[str, str] | None = None):
        self.values, self.types, self.text, self.aliases = values, types, text, aliases or {}

    def ok(self, value: Any) -> bool:
        return any(value == v and type(value) is type(v) for v in self.values)

    def expects(self, default: Any = None) -> str:
        return self.text or "one of " + ", ".join(
            str(v).lower() if isinstance(v, bool) else v for v in self.values)

    def hint(self, value: Any) -> str:
        best = self.aliases.get(str(value).lower()) or closest(
            str(value), [str(v) for v in self.values if isinstance(v, str)])
        return f"; did you mean '{best}'?" if best else ""


class Pattern(Choice):
    """A string matching ``regex`` (``values``: the suggestions for a near miss)."""

    def __init__(self, regex: str, *values: str, text: str, aliases: dict[str, str] | None = None):
        super().__init__(*values, text=text, aliases=aliases)
        self.regex = re.compile(regex)

    def ok(self, value: Any) -> bool:
        return isinstance(value, str) and self.regex.fullmatch(value) is not None


class Items:
    """A list of ``length`` (None: any) numbers of type ``kind``, each within ``each``;
    ``ordered``: in increasing (non-decreasing) order."""

    def __init__(self, length: int | None, kind: type, each: Range, *, ordered: bool = False,
                 example: str = ""):
        self.length, self.kind, self.each, self.ordered, self.example = length, kind, each, ordered, example

    def _is_kind(self, x: Any) -> bool:
        kinds = (int, float) if self.kind is float else (self.kind,)
        return isinstance(x, kinds) and not isinstance(x, bool)

    def ok(self, value: Any) -> bool:
        if not isinstance(value, list) or (self.length is not None and len(value) != self.length):
            return False
        if not all(self._is_kind(x) and self.each.ok(x) for x in value):
            return False
        return not self.ordered or all(a <= b for a, b in zip(value, value[1:]))

    def expects(self, default: Any = None) -> str:
        count = "" if self.length is None else f"{self.length} "
        kind = "integers" if self.kind is int else "numbers"
        text = f"a list of {count}{kind} {self.each.bound()}"
        text += " in increasing order" if self.ordered else ""
        return text + (f", e.g. {self.example}" if self.example else "")

    def hint(self, value: Any) -> str:
        return ""


class Values(Items):
    """A mapping whose values are numbers within ``each``."""

    def __init__(self, each: Range):
        super().__init__(None, float, each)

    def ok(self, value: Any) -> bool:
        return isinstance(value, dict) and super().ok(list(value.values()))

    def expects(self, default: Any = None) -> str:
        return f"a mapping to numbers {self.each.bound()}"


#: Allowed values of the non-component keys of :data:`DEFAULTS`, checked at load after the types.
#: The choice sets mirror the code that reads them (tests/test_checks_config.py keeps them equal).
VALUE_CHECKS: dict[str, Range | Choice | Items] = {
    "seed": Range(0, 2**32 - 1),
    "output_dir": Pattern(r"\s*\S.*", text="a folder path"),
    "device": Pattern(r"auto|cpu|cuda(:[0-9]+)?", "auto", "cpu", "cuda", "cuda:0",
                      text="auto, cpu, cuda or cuda:N", aliases={"gpu": "cuda", "cuda:": "cuda:0"}),
    "input.size": Items(2, int, Range(1), example="[256, 128] (height, width)"),
    "input.pixel_mean": Items(3, float, Range(0, 1), example="[0.485, 0.456, 0.406] (RGB, fractions of 255)"),
    "input.pixel_std": Items(3, float, Range(0, 1, lo_open=True),
                             example="[0.229, 0.224, 0.225] (RGB, fractions of 255)"),
    "input.interpolation": Choice("nearest", "bilinear", "bicubic", "lanczos", "box"),
    "augment.crop": Choice("upscale", "pad", "none"),
    "augment.crop_scale": Range(1),
    "augment.crop_prob": Range(0, 1),
    "augment.pad": Range(0),
    "augment.flip_prob": Range(0, 1),
    "augment.color_jitter.prob": Range(0, 1),
    "augment.color_jitter.brightness": Range(0),
    "augment.color_jitter.contrast": Range(0),
    "augment.color_jitter.saturation": Range(0),
    "augment.color_jitter.hue": Range(0, 0.5),
    "augment.erasing.prob": Range(0, 1),
    "augment.erasing.area": Items(2, float, Range(0, 1, lo_open=True), ordered=True, example="[0.02, 0.4]"),
    "augment.erasing.aspect": Range(0, 1, lo_open=True),
    "augment.erasing.fill": Choice("mean", "constant", "random", "zero"),  # reid.data.transforms.FILLS
    "augment.erasing.fill_value": Items(3, float, Range(-100, 100), example="[0.485, 0.456, 0.406] (normalised)"),
    "augment.erasing.aspect_sampling": Choice("uniform", "log_uniform"),  # transforms.ASPECT_SAMPLINGS
    "augment.erasing.attempts": Range(1),
    "sampler.num_ids": Range(1),
    "sampler.num_instances": Range(1),
    "sampler.epoch": Choice("images", "identities"),  # reid.data.sampler.EPOCHS
    "sampler.last_batch": Choice("drop", "keep"),  # reid.data.sampler.LAST_BATCHES
    "sampler.exhausted": Choice("top_up", "stop"),  # reid.data.sampler.EXHAUSTED
    "data.cache_dir": Pattern(r"\s*\S.*", text="a folder path"),
    "data.workers": Range(0),
    "data.on_device": Choice("auto", True, False, "true", "false", types=(str, bool),
                             text="auto, true or false"),
    "optimizer.name": Choice("adam", "adamw", "sgd"),
    "optimizer.lr": Range(0, 10, lo_open=True),
    "optimizer.weight_decay": Range(0),
    "optimizer.momentum": Range(0, 1, hi_open=True),
    "optimizer.betas": Items(2, float, Range(0, 1, hi_open=True), example="[0.9, 0.999]"),
    "optimizer.lr_mults": Values(Range(0)),
    "schedule.name": Choice("multistep", "cosine", "constant"),
    "schedule.warmup_epochs": Range(0),
    "schedule.warmup_start_lr": Range(0),
    "schedule.milestones": Items(None, int, Range(1), ordered=True, example="[40, 70]"),
    "schedule.gamma": Range(0, lo_open=True),
    "schedule.factors": Items(None, float, Range(0), example="[0.1, 1.0, 0.1] (one more than milestones)"),
    "schedule.min_lr": Range(0),
    "train.epochs": Range(1),
    "train.iters_per_epoch": Range(0),
    "train.amp": Choice("auto", "off", "bf16", "fp16"),
    "train.grad_clip": Range(0),
    "train.log_period": Range(1),
    "train.eval_period": Range(0),
    "train.checkpoint_period": Range(1),
    "train.select_on": Choice("test", "val"),
    "train.select_metric": Choice("mAP", "rank1"),
    "train.shards": Range(1, 64),
    "train.dtype": Choice("float32", "float64"),
    "test.batch_size": Range(1),
    "test.metric": Choice("cosine", "euclidean", "sqeuclidean"),  # reid.evaluation.distance.METRICS
    "test.norm_parts": Range(1, 4096),
    "test.max_rank": Range(1),
}


class Config(dict):
    """A nested dict with attribute access (``cfg.train.epochs``)."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError as exc:
            raise AttributeError(key) from exc

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    @classmethod
    def wrap(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return cls({k: cls.wrap(v) for k, v in value.items()})
        if isinstance(value, list):
            return [cls.wrap(v) for v in value]
        return value

    def to_dict(self) -> dict[str, Any]:
        def unwrap(v: Any) -> Any:
            if isinstance(v, dict):
                return {k: unwrap(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [unwrap(x) for x in v]
            return v

        return unwrap(self)


# --------------------------------------------------------------------------------------- loading


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans (only true/false: ``amp: off`` is the string 'off', not
    False) that also reads ``1e-3``-style numbers (no dot, unsigned exponent) as floats."""


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        with open(path) as f:
            data = _yaml(f.read())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _merge(base: dict, new: dict, origin: dict[str, str], source: str | None,
           prefix: str = "") -> dict:
    """Deep-merge ``new`` into a copy of ``base``, recording the source file of each key
    (``source=None`` keeps the origins already recorded, as when merging a loaded base)."""
    out = dict(base)
    for key, value in new.items():
        if not isinstance(key, str):
            raise ConfigError(f"{source}: keys must be strings, got {key!r}")
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            value = dict(value)
            replace = bool(value.pop("_delete_", False))
            if replace or not isinstance(out.get(key), dict):
                if source is not None:
                    for k in [k for k in origin if k.startswith(path + ".")]:
                        del origin[k]
                out[key] = _merge({}, value, origin, source, path + ".")
            else:
                out[key] = _merge(out[key], value, origin, source, path + ".")
        else:
            out[key] = copy.deepcopy(value)
        if source is not None:
            origin[path] = source
    return out


def _load_with_bases(path: Path, origin: dict[str, str], stack: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in stack:
        raise ConfigError(f"{path}: circular _base_ inheritance")
    data = _read_yaml(path)
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: '_base_' must be a path or a list of paths")
    merged: dict[str, Any] = {}
    for base in bases:
        base_path = (path.parent / base) if not os.path.isabs(base) else Path(base)
        if not base_path.is_file():
            raise ConfigError(f"{path}: _base_ file '{base}' not found (looked for {base_path.resolve()})")
        merged = _merge(merged, _load_with_bases(base_path, origin, stack + (path,)), origin, None)
    return _merge(merged, data, origin, str(path))


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["train.epochs=5", "model.backbone.name=resnet18"]`` -> nested dict, values YAML-typed."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{CLI}: override '{item}' must look like KEY=VALUE (e.g. train.epochs=5)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"{CLI}: override '{item}' has an empty key")
        try:
            value = _yaml(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{CLI}: override '{item}' conflicts with another override")
        node[parts[-1]] = value
    return out


def load_config(path: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> Config:
    """Load ``path`` (with its bases), apply ``KEY=VALUE`` overrides, validate, fill defaults."""
    _import_components()
    origin: dict[str, str] = {}
    user: dict[str, Any] = {}
    if path is not None:
        user = _load_with_bases(Path(path), origin)
    user = _merge(user, parse_overrides(overrides), origin, CLI)
    resolved = _validate_and_fill(user, origin, str(path) if path else CLI)
    return Config.wrap(resolved)


def save_config(cfg: dict[str, Any], path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically)."""
    from .atomic_io import atomic_write_text

    data = cfg.to_dict() if isinstance(cfg, Config) else cfg
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=None))


def _import_components() -> None:
    """Import the modules that fill the registries."""
    import reid.data  # noqa: F401
    import reid.losses  # noqa: F401
    import reid.models  # noqa: F401


# ------------------------------------------------------------------------------------ validation


def _source(origin: dict[str, str], key: str, fallback: str) -> str:
    parts = key.split(".")
    for i in range(len(parts), 0, -1):
        src = origin.get(".".join(parts[:i]))
        if src:
            return src
    return fallback


def _all_schema_keys(schema: dict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in schema.items():
        keys.append(prefix + k)
        if isinstance(v, dict) and k not in COMPONENT_SECTIONS and k != "losses":
            keys.extend(_all_schema_keys(v, prefix + k + "."))
    return keys


def _unknown(key: str, siblings: Iterable[str], where: str, what: str = "key") -> ConfigError:
    leaf = key.rsplit(".", 1)[-1]
    parent = key.rsplit(".", 1)[0] + "." if "." in key else ""
    best = closest(leaf, siblings)
    if best is not None:
        hint = f"; did you mean '{parent}{best}'?"
    else:
        full = closest(key, _all_schema_keys(DEFAULTS))
        if full is None:
            full = next((k for k in _all_schema_keys(DEFAULTS) if k.rsplit(".", 1)[-1] == leaf), None)
        hint = f"; did you mean '{full}'?" if full else f"; valid keys here: {', '.join(sorted(siblings))}"
    return ConfigError(f"{where}: unknown {what} '{key}'{hint}")


_TYPE_NAMES = {
    "int": int, "float": float, "bool": bool, "str": str, "list": list, "tuple": list,
    "dict": dict, "None": type(None), "Sequence": list,
}


def _expected_types(default: Any, annotation: Any) -> tuple[type, ...] | None:
    """Accepted YAML types for a value, from its default or (simple) annotation; None = any."""
    if default is not None and default is not inspect.Parameter.empty:
        if isinstance(default, bool):
            return (bool,)
        if isinstance(default, int):
            return (int,)
        if isinstance(default, float):
            return (float, int)
        if isinstance(default, str):
            return (str,)
        if isinstance(default, (list, tuple)):
            return (list,)
        if isinstance(default, dict):
            return (dict,)
        return None
    if isinstance(annotation, str):
        types: list[type] = []
        for part in annotation.split("|"):
            base = part.strip().split("[", 1)[0].split(".")[-1]
            if base not in _TYPE_NAMES:
                return None
            types.append(_TYPE_NAMES[base])
        if float in types:
            types.append(int)
        return tuple(types)
    if annotation in (int, float, bool, str, list, dict):
        return (annotation, int) if annotation is float else (annotation,)
    return None


_LITERAL = re.compile(r"^\s*(?:typing\.)?Literal\[(.*)\]\s*$", re.S)


def literal_choices(annotation: Any, namespace: dict[str, Any] | None = None) -> tuple[Any, ...] | None:
    """The values of a ``Literal[...]`` annotation (a string under ``from __future__ import
    annotations``, the typing object, or the name of a module-level alias such as ``Neck =
    Literal["bnneck", "none"]`` looked up in ``namespace``), else None: a component keyword
    annotated so is one of a fixed set of values, checked when the config loads."""
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    if isinstance(annotation, str) and namespace is not None and annotation.strip().isidentifier():
        alias = namespace.get(annotation.strip())
        if typing.get_origin(alias) is typing.Literal:
            return typing.get_args(alias)
    match = _LITERAL.match(annotation) if isinstance(annotation, str) else None
    if match is None:
        return None
    try:
        values = ast.literal_eval(f"({match.group(1)},)")
    except (ValueError, SyntaxError):
        return None
    return tuple(values)


def _namespace(component: Any) -> dict[str, Any]:
    """The globals of the module defining ``component`` (where its annotations' names live)."""
    module = sys.modules.get(getattr(component, "__module__", ""), None)
    return vars(module) if module is not None else {}


def _check_type(key: str, value: Any, types: tuple[type, ...] | None, where: str,
                default: Any = None) -> None:
    if types is None:
        return
    if value is None and (default is None or type(None) in types):
        return
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        names = " or ".join(sorted({t.__name__ for t in types if t is not type(None)}))
        raise ConfigError(
            f"{where}: key '{key}' expects {names}, got {type(value).__name__} {value!r}"
        )


def _unknown_name(registry: Registry, name: str, at: str, where: str, noun: str | None = None) -> ConfigError:
    """``WHERE: unknown KIND 'name' at 'key'; did you mean '...'?`` (or the valid names)."""
    hint = suggestion(name, registry.names())
    return ConfigError(f"{where}: unknown {noun or registry.kind} '{name}' at '{at}'{hint}")


def _validate_component(key: str, section: Any, registry: Registry, origin: dict[str, str],
                        fallback: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    where = _source(origin, key, fallback)
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: '{key}' must be a mapping with a 'name', got {section!r}")
    extra = extra or {}
    name = section.get("name")
    if not isinstance(name, str):
        raise ConfigError(f"{where}: '{key}.name' must name a {registry.kind}: {registry.names()}")
    if name not in registry:
        raise _unknown_name(registry, name, f"{key}.name", where)
    params = registry.parameters(name)
    out: dict[str, Any] = {"name": name}
    for k, v in extra.items():
        if k != "name":
            out[k] = v
    for k, p in params.items():
        if p.default is not p.empty:
            out[k] = copy.deepcopy(p.default)
    for k, v in section.items():
        if k == "name":
            continue
        sub = f"{key}.{k}"
        if k in extra:
            _check_type(sub, v, _expected_types(extra[k], None), _source(origin, sub, fallback))
            out[k] = v
            continue
        if k not in params:
            raise _unknown(sub, list(params) + [e for e in extra], _source(origin, sub, fallback),
                           f"key for {registry.kind} '{name}'")
        p = params[k]
        if k in NESTED_COMPONENTS and isinstance(v, dict):
            if "name" not in v and isinstance(p.default, dict):
                v = {**p.default, **v}
            out[k] = _validate_component(sub, v, NESTED_COMPONENTS[k], origin, fallback)
            continue
        choices = literal_choices(p.annotation, _namespace(registry.get(name)))
        if choices is not None:
            check = Choice(*choices)
            if not check.ok(v):
                raise ConfigError(f"{_source(origin, sub, fallback)}: key '{sub}' expects {check.expects()}, "
                                  f"got {v!r}{check.hint(v)}")
        else:
            _check_type(sub, v, _expected_types(p.default, p.annotation), _source(origin, sub, fallback),
                        None if p.default is p.empty else p.default)
        out[k] = v
    for k, nested in NESTED_COMPONENTS.items():
        if k in out and isinstance(out[k], dict) and "name" in out[k] and not isinstance(
            section.get(k), dict
        ):
            out[k] = _validate_component(f"{key}.{k}", out[k], nested, origin, fallback)
    return out


def _validate_section(key: str, user: dict, schema: dict, origin: dict[str, str],
                      fallback: str) -> dict[str, Any]:
    out = copy.deepcopy(schema)
    for k, v in user.items():
        sub = f"{key}.{k}" if key else k
        where = _source(origin, sub, fallback)
        if k not in schema:
            raise _unknown(sub, schema.keys(), where)
        if k in COMPONENT_SECTIONS and not key:
            if isinstance(v, dict) and "name" not in v:
                v = {**schema[k], **v}
            out[k] = _validate_component(sub, v, COMPONENT_SECTIONS[k], origin, fallback)
        elif k == "losses" and not key:
            if not isinstance(v, dict):
                raise ConfigError(f"{where}: 'losses' must map labels to loss sections")
            losses = {}
            for label, spec in v.items():
                if spec is None:
                    continue
                if isinstance(spec, dict) and "name" not in spec:
                    spec = {"name": label, **spec}
                losses[label] = _validate_component(
                    f"losses.{label}", spec, LOSSES, origin, fallback, LOSS_EXTRA_KEYS
                )
            out[k] = losses
        elif isinstance(schema[k], dict) and schema[k]:
            if not isinstance(v, dict):
                raise ConfigError(f"{where}: '{sub}' must be a mapping, got {v!r}")
            out[k] = _validate_section(sub, v, schema[k], origin, fallback)
        else:
            types = getattr(VALUE_CHECKS.get(sub), "types", None) or _expected_types(schema[k], None)
            _check_type(sub, v, types, where, schema[k])
            out[k] = v
    if not key:
        for k, reg in COMPONENT_SECTIONS.items():
            if k not in user:
                out[k] = _validate_component(k, schema[k], reg, origin, fallback)
        if "losses" not in user:
            out["losses"] = {
                label: _validate_component(f"losses.{label}", spec, LOSSES, origin, fallback,
                                           LOSS_EXTRA_KEYS)
                for label, spec in schema["losses"].items()
            }
    return out


def _validate_and_fill(user: dict[str, Any], origin: dict[str, str], fallback: str) -> dict:
    resolved = _validate_section("", user, DEFAULTS, origin, fallback)
    _check_values(resolved, origin, fallback)
    _validate_reference(resolved["reference"], origin, fallback)
    return resolved


_MISSING = object()


def _lookup(cfg: dict[str, Any], key: str) -> Any:
    """The value at dotted ``key`` (``_MISSING`` when absent)."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _check_values(cfg: dict[str, Any], origin: dict[str, str], fallback: str) -> None:
    """Ranges and choice sets of :data:`VALUE_CHECKS`, and the relations between keys."""
    for key, check in VALUE_CHECKS.items():
        value, default = _lookup(cfg, key), _lookup(DEFAULTS, key)
        if value is not _MISSING and not check.ok(value):
            raise ConfigError(f"{_source(origin, key, fallback)}: key '{key}' expects {check.expects(default)}, "
                              f"got {value!r}{check.hint(value)}")
    schedule, lr = cfg["schedule"], cfg["optimizer"]["lr"]
    if schedule["name"] == "cosine" and schedule["min_lr"] > lr:
        raise ConfigError(f"{_source(origin, 'schedule.min_lr', fallback)}: key 'schedule.min_lr' "
                          f"(the cosine floor) must not exceed optimizer.lr = {lr}, got {schedule['min_lr']}")
    if schedule["factors"] and len(schedule["factors"]) != len(schedule["milestones"]) + 1:
        raise ConfigError(f"{_source(origin, 'schedule.factors', fallback)}: key 'schedule.factors' needs one "
                          f"more entry than schedule.milestones ({len(schedule['milestones'])}), "
                          f"got {len(schedule['factors'])}")


# ------------------------------------------------------------------------------------- reference

REFERENCE_METRICS = ("rank1", "mAP")


def _number_or_null(key: str, value: Any, where: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"{where}: key '{key}' expects a number or null, got {value!r}")


def _validate_reference(ref: dict[str, Any], origin: dict[str, str], fallback: str) -> None:
    """Numbers are numbers or null; ``datasets`` maps registered data set names to {rank1, mAP};
    flat numbers and ``datasets`` together are ambiguous (which set do the flat ones belong to?)."""
    for key in (*REFERENCE_METRICS, "step_time"):
        _number_or_null(f"reference.{key}", ref[key], _source(origin, f"reference.{key}", fallback))
    for name, numbers in ref["datasets"].items():
        key = f"reference.datasets.{name}"
        where = _source(origin, key, fallback)
        if name not in DATASETS:
            raise _unknown_name(DATASETS, str(name), key, where, noun="data set")
        if not isinstance(numbers, dict):
            raise ConfigError(f"{where}: '{key}' must be a mapping {{rank1: ..., mAP: ...}}, got {numbers!r}")
        for metric, value in numbers.items():
            if metric not in REFERENCE_METRICS:
                raise _unknown(f"{key}.{metric}", REFERENCE_METRICS, where)
            _number_or_null(f"{key}.{metric}", value, where)
        ref["datasets"][name] = {m: numbers.get(m) for m in REFERENCE_METRICS}
    if ref["datasets"] and any(ref[m] is not None for m in REFERENCE_METRICS):
        where = _source(origin, "reference.datasets", fallback)
        raise ConfigError(f"{where}: 'reference' sets both flat rank1/mAP and per-data-set numbers "
                          "(reference.datasets); keep one (replace an inherited reference with _delete_: true)")


def reference_for(cfg: dict[str, Any], dataset: str | None = None) -> dict[str, Any]:
    """The published {rank1, mAP} of ``cfg`` on ``dataset`` (default: ``cfg.dataset.name``): its
    ``reference.datasets`` entry, else the flat numbers when no per-data-set numbers are given."""
    ref = cfg["reference"]
    name = dataset or cfg["dataset"]["name"]
    if ref["datasets"]:
        numbers = ref["datasets"].get(name, {})
        return {m: numbers.get(m) for m in REFERENCE_METRICS}
    return {m: ref[m] for m in REFERENCE_METRICS}
