"""A trained model from a checkpoint alone: its stored config, class count and weights.

Checkpoints written by the trainer carry ``config`` (the resolved config dict) and
``num_classes``; older ones carry neither and need a config file (``config=``). A config file or
``KEY=VALUE`` overrides given here replace or amend the stored config (e.g. another data set for a
cross-domain test); the model is always built with the checkpoint's own class count, so the
classifier (unused for retrieval) never keeps a checkpoint from loading.

A checkpoint is data, never instructions: its stored config sets the model, the input contract and
the test options, but no path. Keys that name files or folders (:func:`is_path_key`: ``output_dir``,
``data.cache_dir``, ``dataset.root``, ``model.backbone.weights``, ...) and ``_base_`` are dropped from
it, so where a command reads and writes comes from the user's command line and config only (the
defaults otherwise); pretrained initial weights are never loaded (the checkpoint's replace them).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
import yaml

from reid.config import Config, ConfigError, load_config
from reid.engine.checkpoint import CheckpointError, load_checkpoint
from reid.engine.guards import load_model_state, state_mismatch
from reid.models import build_model

#: Class count tried first when an old checkpoint does not record it (a prime, unlikely to equal
#: any other layer width), to find the classifier's shape from the mismatching weights.
PROBE_CLASSES = 997
#: Key names (at any depth) that name a file or folder, and their endings.
PATH_NAMES = ("_base_", "root", "path", "file", "weights", "output_dir", "cache_dir")
PATH_ENDINGS = ("_dir", "_root", "_file", "_path", "_csv")


def is_path_key(name: str) -> bool:
    """Whether a config key named ``name`` (its last part) names a file or folder."""
    return name in PATH_NAMES or name.endswith(PATH_ENDINGS)


def stored_recipe(stored: Mapping[str, Any]) -> dict[str, Any]:
    """The stored config of a checkpoint without its paths (:func:`is_path_key`) and with every
    ``pretrained`` switch off: what a checkpoint may decide (see the module docstring)."""
    out: dict[str, Any] = {}
    for key, value in stored.items():
        if is_path_key(str(key)):
            continue
        if key == "pretrained":
            value = False
        out[key] = stored_recipe(value) if isinstance(value, Mapping) else value
    return out


def checkpoint_config(state: Mapping[str, Any], checkpoint: str | os.PathLike, config: str | os.PathLike | None = None,
                      overrides: Iterable[str] = ()) -> Config:
    """The config to use with checkpoint ``state``: ``config`` (a YAML file) when given, else the
    resolved config stored in the checkpoint without its paths (:func:`stored_recipe`: they take
    their defaults unless ``overrides`` set them); ``overrides`` (``KEY=VALUE``) are applied on top
    and the result is validated like any config. A checkpoint without a stored config and no
    ``config`` is a :class:`CheckpointError`."""
    overrides = list(overrides)
    if config is not None:
        return load_config(config, overrides)
    stored = state.get("config")
    if stored is not None and not isinstance(stored, dict):
        raise CheckpointError(f"{checkpoint}: its stored config is a {type(stored).__name__}, not a mapping; "
                              "name the config it was trained with: --config CFG")
    if not isinstance(stored, dict):
        raise CheckpointError(f"{checkpoint}: holds no config (written before checkpoints carried one); "
                              "name the config it was trained with: --config CFG")
    with tempfile.TemporaryDirectory(prefix="reid-ckpt-") as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(stored_recipe(stored), sort_keys=False))
        try:
            return load_config(path, overrides)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(str(path.resolve()), f"{checkpoint} (stored config)")
                              .replace(str(path), f"{checkpoint} (stored config)")) from None


def infer_num_classes(model_cfg: Mapping[str, Any], weights: Mapping[str, Any], input_size: Any = None) -> int | None:
    """The class count of ``weights`` (a model state dict) for a checkpoint that does not record it:
    the size, in ``weights``, of every dimension that equals :data:`PROBE_CLASSES` in a model built
    with that many classes (None when the classifiers' sizes disagree or none is found)."""
    probe = build_model(model_cfg, PROBE_CLASSES, input_size=input_size).state_dict()
    found = {int(weights[k].shape[d]) for k, t in probe.items() if k in weights
             and getattr(weights[k], "ndim", -1) == t.ndim
             for d in range(t.ndim) if t.shape[d] == PROBE_CLASSES}
    return found.pop() if len(found) == 1 else None


def build_from_checkpoint(state: Mapping[str, Any], cfg: Config, checkpoint: str | os.PathLike,
                          fallback_classes: int | None = None) -> torch.nn.Module:
    """``cfg.model`` built with the checkpoint's class count (recorded, else inferred from the
    weights, else ``fallback_classes``) and the checkpoint's weights loaded (CPU, eval mode)."""
    weights = state["model"]
    num_classes = state.get("num_classes")
    if num_classes is None:
        num_classes = infer_num_classes(cfg.model, weights, cfg.input.size) or fallback_classes
    if num_classes is None:
        raise CheckpointError(f"{checkpoint}: cannot tell its number of training identities (no 'num_classes', "
                              f"no classifier matching model '{cfg.model.name}'); "
                              + (state_mismatch(build_model(cfg.model, 1, input_size=cfg.input.size), weights)
                                 or "check --config"))
    model = build_model(cfg.model, int(num_classes), input_size=cfg.input.size)
    load_model_state(model, weights, checkpoint, f"model '{cfg.model.name}' of the config")
    return model.eval()


def load_model(checkpoint: str | os.PathLike, device: str | torch.device | None = "cpu",
               config: str | os.PathLike | None = None, overrides: Iterable[str] = ()
               ) -> tuple[torch.nn.Module, Config]:
    """(model in eval mode on ``device``, its config) from ``checkpoint``; the config is the one
    stored in the checkpoint unless ``config`` (a YAML file) is given; ``overrides`` amend it.
    ``device``: a torch device, ``"auto"`` (CUDA when available) or None (the config's ``device``)."""
    from reid.engine.trainer import resolve_device

    state = load_checkpoint(checkpoint)
    cfg = checkpoint_config(state, checkpoint, config, overrides)
    model = build_from_checkpoint(state, cfg, checkpoint)
    spec = cfg.device if device is None else device
    return model.to(resolve_device(spec) if isinstance(spec, str) else torch.device(spec)), cfg


#: Model keys that only say how the backbone was initialised before training (a flag, a file path):
#: they do not change what a trained checkpoint computes, so the contract hash leaves them out.
INIT_KEYS = ("pretrained", "weights")


def contract_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that decides a checkpoint's retrieval feature: the ``model``
    section without the backbone's initialisation keys (:data:`INIT_KEYS`, paths included), the
    ``input`` section (size, mean, std, interpolation) and ``test.flip``. No path is in it."""
    def plain(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {str(k): plain(x) for k, x in v.items() if k not in INIT_KEYS}
        return [plain(x) for x in v] if isinstance(v, (list, tuple)) else v

    return {"model": plain(cfg["model"]), "input": plain(cfg["input"]), "flip": bool(cfg["test"]["flip"])}


def feature_contract(cfg: Mapping[str, Any], model: torch.nn.Module) -> dict[str, str]:
    """``{"config": hash, "weights": hash}`` (16 hex digits each) of a loaded checkpoint: the config
    hash of :func:`contract_config` (canonical JSON, so key order and paths do not matter) and a hash
    of the model's weights (every state-dict tensor: name, dtype, shape, bytes; CPU order). Features
    of two checkpoints are comparable only when both agree; the same config trained twice agrees
    on ``config`` only."""
    import hashlib
    import json

    config = hashlib.sha256(json.dumps(contract_config(cfg), sort_keys=True, default=str).encode()).hexdigest()
    weights = hashlib.blake2b(digest_size=8)
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        weights.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        weights.update(t.reshape(-1).view(torch.uint8).numpy())
    return {"config": config[:16], "weights": weights.hexdigest()}
