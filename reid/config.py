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
import inspect
import os
import re
from pathlib import Path
from typing import Any, Iterable

import yaml

from .registry import BACKBONES, DATASETS, LOSSES, MODELS, ConfigError, Registry, closest

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
        "eval_before": False,  # evaluate the untrained model first (printed as 'before')
        "select_on": "test",  # which metrics pick checkpoints/best.pth: test | val (held-out train images)
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
        "metric": "cosine",  # cosine | euclidean
        "max_rank": 50,
        "rerank": False,
        "aqe": False,
    },
}

#: Keys whose value is one of a fixed set of strings (checked at load).
CHOICES: dict[str, tuple[str, ...]] = {
    "sampler.epoch": ("images", "identities"),  # reid.data.sampler.EPOCHS
    "sampler.last_batch": ("drop", "keep"),  # reid.data.sampler.LAST_BATCHES
    "augment.erasing.aspect_sampling": ("uniform", "log_uniform"),  # reid.data.transforms.ASPECT_SAMPLINGS
    "augment.erasing.fill": ("mean", "constant", "random", "zero"),  # reid.data.transforms.FILLS
}

#: Sections whose keys come from a registered component's signature.
COMPONENT_SECTIONS: dict[str, Registry] = {"dataset": DATASETS, "model": MODELS}
#: Component keyword arguments that are themselves a component section.
NESTED_COMPONENTS: dict[str, Registry] = {"backbone": BACKBONES}
#: Keys a loss entry takes besides its constructor's keywords.
LOSS_EXTRA_KEYS = {"name": "", "weight": 1.0}


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
    """SafeLoader that also reads ``1e-3``-style numbers (no dot, unsigned exponent) as floats."""


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
        best = closest(name, registry.names())
        hint = f"; did you mean '{best}'?" if best else f"; valid: {', '.join(registry.names())}"
        raise ConfigError(f"{where}: unknown {registry.kind} '{name}' at '{key}.name'{hint}")
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
            _check_type(sub, v, _expected_types(schema[k], None), where, schema[k])
            if sub in CHOICES and v not in CHOICES[sub]:
                best = closest(str(v), CHOICES[sub])
                hint = f"; did you mean '{best}'?" if best else ""
                raise ConfigError(f"{where}: '{sub}' must be one of {', '.join(CHOICES[sub])}, got '{v}'{hint}")
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
    out = _validate_section("", user, DEFAULTS, origin, fallback)
    _validate_reference(out["reference"], origin, fallback)
    return out


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
            best = closest(str(name), DATASETS.names())
            hint = f"; did you mean '{best}'?" if best else f"; valid: {', '.join(DATASETS.names())}"
            raise ConfigError(f"{where}: unknown data set '{name}' at '{key}'{hint}")
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
