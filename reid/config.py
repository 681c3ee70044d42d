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

import copy
import os
import re
from pathlib import Path
from typing import Any, Iterable

import yaml

from .checks import (  # noqa: F401 - Choice, Pattern, literal_choices: re-exported for tests and users
    DEVICE,
    Choice,
    Flag,
    Items,
    Nullable,
    Pattern,
    Range,
    Strings,
    Text,
    Values,
    expected_types,
    keyword_error,
    keyword_problem,
    literal_choices,
    namespace_of,
    type_error,
)
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


#: Allowed values of the non-component keys of :data:`DEFAULTS`, checked at load after the types.
#: The choice sets mirror the code that reads them (tests/test_checks_config.py keeps them equal).
VALUE_CHECKS: dict[str, Range | Choice | Items] = {
    "seed": Range(0, 2**32 - 1),
    "output_dir": Pattern(r"\s*\S.*", text="a folder path"),
    "device": DEVICE,
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
    # flags, lists of names and the published numbers: every leaf of DEFAULTS has a check here
    "optimizer.nesterov": Flag(),
    "optimizer.amsgrad": Flag(),
    "optimizer.bias_weight_decay": Flag(),
    "train.channels_last": Flag(),
    "train.compile": Flag(),
    "train.checkpoint_modules": Strings(),
    "train.eval_before": Flag(),
    "train.sync_bn": Flag(),
    "train.gather_outputs": Flag(),
    "train.find_unused_parameters": Flag(),
    "reference.rank1": Nullable(Range(0, 100)),  # percent
    "reference.mAP": Nullable(Range(0, 100)),
    "reference.step_time": Nullable(Range(0, lo_open=True)),
    "reference.source": Text(),
    "test.flip": Flag(),
    "test.normalize": Flag(),
    "test.rerank": Flag(),
    "test.aqe": Flag(),
}

#: Schema leaves checked by a function instead of an entry of VALUE_CHECKS (the key -> where).
CHECKED_ELSEWHERE = {"reference.datasets": "_validate_reference (registered data set -> {rank1, mAP})"}

#: The checks of a loss entry's keys besides its constructor's keywords.
LOSS_EXTRA_CHECKS = {"weight": Range(0)}


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


#: The most nodes a YAML document may expand to, aliases counted at each use (a config has a few
#: hundred): an "alias bomb" (each anchor a list of aliases of the previous one) fails fast.
YAML_MAX_NODES = 100_000


class YamlShapeError(ConfigError):
    """A YAML document refused before it is used: a duplicate key, or aliases expanding too far."""


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int]) -> int:
    """Nodes of ``node`` with every alias expanded (memoised per node, so a bomb costs its text)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise YamlShapeError(f"line {node.start_mark.line + 1}: an alias refers to its own anchor (a recursive "
                             "structure); a config is a tree")
    open_.add(key)
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    else:
        children = []
    total = 1
    for child in children:
        total += _expanded_size(child, sizes, open_)
        if total > YAML_MAX_NODES:
            break
    open_.discard(key)
    sizes[key] = total
    if total > YAML_MAX_NODES:
        raise YamlShapeError(f"line {node.start_mark.line + 1}: aliases expand the document past "
                             f"{YAML_MAX_NODES} values (an alias bomb?); write the values out")
    return total


def _compose_document(self: _Loader) -> yaml.Node:
    node = yaml.SafeLoader.compose_document(self)
    _expanded_size(node, {}, set())
    return node


def _construct_mapping(self: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = self.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: the constructor reports it
            continue
        if first is not None:
            raise YamlShapeError(f"duplicate key '{key}' (lines {first} and {line}); the second would "
                                 "silently replace the first")
        seen[key] = line
    return yaml.SafeLoader.construct_mapping(self, node, deep=deep)


_Loader.compose_document = _compose_document
_Loader.construct_mapping = _construct_mapping


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                          "save the config as UTF-8") from None
    try:
        data = _yaml(text)
    except YamlShapeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
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
        except YamlShapeError as exc:
            raise ConfigError(f"{CLI}: override '{key}': {exc}") from None
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
    _check_declarations()
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


def schema_leaves(schema: dict[str, Any] = DEFAULTS, prefix: str = "") -> list[str]:
    """The dotted keys of the schema's values (component sections excepted: their signatures)."""
    out: list[str] = []
    for key, value in schema.items():
        if not prefix and (key in COMPONENT_SECTIONS or key == "losses"):
            continue
        if isinstance(value, dict) and value:
            out += schema_leaves(value, f"{prefix}{key}.")
        else:
            out.append(prefix + key)
    return out


_DECLARED: list[bool] = []


def _check_declarations() -> None:
    """Refuse to load any config while a schema key has no declared check (a bug of reid)."""
    if not _DECLARED:
        missing = [k for k in schema_leaves() if k not in VALUE_CHECKS and k not in CHECKED_ELSEWHERE]
        if missing:
            raise RuntimeError(f"reid.config: schema keys without a check in VALUE_CHECKS: {', '.join(missing)}")
        _DECLARED.append(True)


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


def _check_type(key: str, value: Any, types: tuple[type, ...] | None, where: str,
                default: Any = None) -> None:
    message = type_error(key, value, types, default)
    if message:
        raise ConfigError(f"{where}: {message}")


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
            _check_type(sub, v, expected_types(extra[k], None), _source(origin, sub, fallback))
            message = keyword_error(sub, v, LOSS_EXTRA_CHECKS.get(k), extra[k])
            if message:
                raise ConfigError(f"{_source(origin, sub, fallback)}: {message}")
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
        default = None if p.default is p.empty else p.default
        message = keyword_problem(sub, v, p.annotation, default, namespace_of(registry.get(name)))
        if message:
            raise ConfigError(f"{_source(origin, sub, fallback)}: {message}")
        out[k] = v
    for k, nested in NESTED_COMPONENTS.items():
        if k in out and isinstance(out[k], dict) and "name" in out[k] and not isinstance(
            section.get(k), dict
        ):
            out[k] = _validate_component(f"{key}.{k}", out[k], nested, origin, fallback)
    hook = getattr(registry.get(name), "check_keywords", None)  # keywords checked as a whole
    if hook is not None:
        try:
            hook(out)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
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
            types = getattr(VALUE_CHECKS.get(sub), "types", None) or expected_types(schema[k], None)
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
    for keys, relation in RELATIONS:
        found = relation(cfg)
        if found:
            key, message = found if isinstance(found, tuple) else (keys[0], found)
            raise ConfigError(f"{_source(origin, key, fallback)}: key '{key}' {message}")


def _cosine_floor(cfg: dict[str, Any]) -> str | None:
    schedule, lr = cfg["schedule"], cfg["optimizer"]["lr"]
    if schedule["name"] == "cosine" and schedule["min_lr"] > lr:
        return f"(the cosine floor) must not exceed optimizer.lr = {lr}, got {schedule['min_lr']}"
    return None


def _factor_count(cfg: dict[str, Any]) -> str | None:
    schedule = cfg["schedule"]
    if schedule["factors"] and len(schedule["factors"]) != len(schedule["milestones"]) + 1:
        return (f"needs one more entry than schedule.milestones ({len(schedule['milestones'])}), "
                f"got {len(schedule['factors'])}")
    return None


def _pair_losses(cfg: dict[str, Any]) -> list[str]:
    """Labels of the configured losses that compare images of a batch (``pairwise = True`` on the class)."""
    return [label for label, spec in cfg["losses"].items()
            if getattr(LOSSES.get(spec["name"]), "pairwise", False)]


def _batch_pairs(key: str) -> Any:
    def relation(cfg: dict[str, Any]) -> str | None:
        losses, value = _pair_losses(cfg), cfg["sampler"][key.split(".")[1]]
        if losses and value < 2:
            what = "identities (negatives)" if key == "sampler.num_ids" else "images per identity (positives)"
            return (f"must be >= 2 with the {', '.join(losses)} loss (it needs {what} in each batch), "
                    f"got {value}")
        return None
    return relation


def _output_stride(model: dict[str, Any], stride: Any = None) -> int:
    """Input pixels per cell of the backbone's last map (a branch's own last ``stride`` when set)."""
    from .models.backbones.base import output_stride

    last = stride if isinstance(stride, int) else (model.get("backbone") or {}).get("last_stride", 2)
    return output_stride(last if isinstance(last, int) and last >= 1 else 2)


def _input_size(cfg: dict[str, Any]) -> str | None:
    stride = _output_stride(cfg["model"])
    if min(cfg["input"]["size"]) < stride:
        return (f"expects each side >= the network's output stride {stride} (model.backbone.last_stride "
                f"{stride // _output_stride({}, 1)}) so that its last feature map covers whole cells, "
                f"got {cfg['input']['size']}")
    return None


def _stripes(cfg: dict[str, Any]) -> tuple[str, str] | None:
    model, height = cfg["model"], cfg["input"]["size"][0]
    branches = [model] + [b for b in model.get("branches") or [] if isinstance(b, dict)]
    for i, branch in enumerate(branches):
        stripes = branch.get("stripes")
        if isinstance(stripes, int) and not isinstance(stripes, bool) and stripes > 0:
            stride = _output_stride(model, branch.get("stride"))
            rows = -(-height // stride)
            if stripes > rows:
                key = "model.stripes" if i == 0 else f"model.branches[{i - 1}].stripes"
                return key, (f"expects at most the {rows} rows of the feature map (input.size height {height} / "
                             f"output stride {stride}), got {stripes}; lower it or raise input.size")
    return None


#: Relations between keys, checked at load after every key's own check: (keys, check) where the
#: check returns the message (after "key 'KEYS[0]' ") or None. One declared list; docs/checks.md.
RELATIONS: list[tuple[tuple[str, ...], Any]] = [
    (("schedule.min_lr", "optimizer.lr", "schedule.name"), _cosine_floor),
    (("schedule.factors", "schedule.milestones"), _factor_count),
    (("sampler.num_ids", "losses"), _batch_pairs("sampler.num_ids")),
    (("sampler.num_instances", "losses"), _batch_pairs("sampler.num_instances")),
    (("input.size", "model.backbone.last_stride"), _input_size),
    (("model.stripes", "model.branches", "input.size", "model.backbone.last_stride"), _stripes),
]


# ------------------------------------------------------------------------------------- reference

REFERENCE_METRICS = ("rank1", "mAP")
PERCENT_OR_NULL = Nullable(Range(0, 100))


def _number_or_null(key: str, value: Any, where: str) -> None:
    check = VALUE_CHECKS.get(key, PERCENT_OR_NULL)
    if not check.ok(value):
        raise ConfigError(f"{where}: key '{key}' expects {check.expects()}, got {value!r}{check.hint(value)}")


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
