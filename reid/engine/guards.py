"""Run-time checks of a training run: its folders before any work, the loss while it trains, the
weights at each epoch's end, and checkpoints that do not fit the model. Each failure is a
:class:`~reid.registry.UserError` (one ``error:`` line from the command-line tools)."""
from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from reid.atomic_io import PathError, make_folder, os_errors
from reid.evaluation.finite import NonFiniteError

from .checkpoint import CheckpointError
from .run_lock import LOCK_NAME

#: A training loss above this multiple of its first value is reported (once) as diverging.
DIVERGENCE_FACTOR = 100.0
#: Keys listed per kind in a state-dict mismatch message.
LISTED_KEYS = 3


class NonFiniteLossError(NonFiniteError):
    """The training loss became NaN or infinite; the step was not applied and nothing was saved."""


class NonFiniteWeightsError(NonFiniteError):
    """The model's parameters or buffers became NaN or infinite while training; the run stopped
    before they were evaluated or saved."""


class RunPathError(PathError):
    """An output or cache folder that cannot be created or written, a folder holding a previous
    run, or a checkpoint to resume that does not exist."""


#: Files whose presence makes a folder hold a (started or finished) run.
RUN_FILES = ("checkpoints/last.pth", "checkpoints/best.pth", "metrics.json")


def _first_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_folder(path: str | os.PathLike, key: str, must_write: bool = True) -> None:
    """Raise :class:`RunPathError` when folder ``path`` (config key ``key``) cannot be created or,
    with ``must_write``, written: it or a parent is a file, or the nearest existing folder is not
    writable. Creates nothing."""
    target = Path(path).expanduser().absolute()
    existing = _first_existing(target)
    if not existing.is_dir():
        where = "is a file" if existing == target else f"is under the file {existing}"
        raise RunPathError(f"{key}: '{path}' {where}, not a folder; choose another {key}")
    if (must_write or existing != target) and not os.access(existing, os.W_OK | os.X_OK):
        raise RunPathError(f"{key}: cannot write in {existing} (permission denied); choose another {key}")


def check_output_file(path: str | os.PathLike, key: str) -> None:
    """Raise :class:`RunPathError` when file ``path`` (option ``key``, e.g. ``--out``) cannot be
    written: it is a folder, or its folder cannot be created or written (:func:`check_folder`)."""
    if Path(path).is_dir():
        raise RunPathError(f"{key}: '{path}' is a folder, not a file; choose another {key}")
    check_folder(Path(path).absolute().parent, key)


def resume_path(output_dir: str | os.PathLike, resume: str) -> Path:
    """The checkpoint ``--resume`` names (``auto``: ``<output_dir>/checkpoints/last.pth``)."""
    return Path(output_dir) / "checkpoints" / "last.pth" if resume == "auto" else Path(resume)


def previous_run(output_dir: str | os.PathLike) -> list[str]:
    """The files of :data:`RUN_FILES` in ``output_dir`` (empty: no run was started there)."""
    return [name for name in RUN_FILES if (Path(output_dir) / name).exists()]


def aside_name(output_dir: str | os.PathLike) -> Path:
    """A free sibling name for a previous run: ``NAME.old-YYYYmmdd-HHMMSS`` (``-2``, ... if taken)."""
    folder = Path(output_dir).absolute()
    base = folder.with_name(f"{folder.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    target, n = base, 1
    while target.exists() or target.is_symlink():
        n += 1
        target = base.with_name(f"{base.name}-{n}")
    return target


def move_run_aside(output_dir: str | os.PathLike) -> Path:
    """Move everything in ``output_dir`` except the run lock into a new dated sibling folder
    (:func:`aside_name`; renames only, nothing is copied or deleted); returns that folder."""
    folder = Path(output_dir)
    target = aside_name(folder)
    make_folder(target, "the folder for the previous run")
    with os_errors(folder, f"cannot move the previous run aside to {target}"):
        for entry in sorted(os.listdir(folder)):
            if entry != LOCK_NAME:
                os.rename(folder / entry, target / entry)
    return target


def check_run_folders(cfg: Any) -> None:
    """``output_dir`` and ``data.cache_dir`` can be created and written (nothing is created)."""
    check_folder(cfg.output_dir, "output_dir")
    check_folder(cfg.data.cache_dir, "data.cache_dir", must_write=False)


def check_run_paths(cfg: Any, resume: str | None = None, overwrite: bool = False) -> None:
    """What a training run needs from the file system, checked before any work: ``output_dir`` and
    ``data.cache_dir`` can be created and written, a previous run in ``output_dir`` is continued
    (``resume``) or moved aside (``overwrite``), never replaced, and the checkpoint to resume exists."""
    check_run_folders(cfg)
    if resume and overwrite:
        raise RunPathError("--overwrite starts a new run and --resume continues one; pass one of them")
    found = previous_run(cfg.output_dir)
    if found and not resume and not overwrite:
        raise RunPathError(
            f"output_dir {cfg.output_dir} holds a previous run ({', '.join(found)}); continue it with "
            f"--resume auto, or pass --overwrite to move it aside (to {Path(cfg.output_dir).absolute()}.old-"
            "YYYYmmdd-HHMMSS; nothing is deleted), or choose another output_dir")
    if resume:
        path = resume_path(cfg.output_dir, resume)
        if path.is_file():
            return
        if resume == "auto":
            raise RunPathError(f"--resume auto: no previous run in {cfg.output_dir} ({path} not found); "
                               "start without --resume, or name a checkpoint: --resume PATH")
        raise RunPathError(f"--resume: checkpoint not found: {path}")


# ------------------------------------------------------------------------------------- the loss


def non_finite_loss(total: torch.Tensor, parts: Mapping[str, torch.Tensor], images: torch.Tensor,
                    epoch: int, iteration: int) -> NonFiniteLossError:
    """The error for a NaN/inf loss at (0-based) ``epoch``, ``iteration``, naming its terms and,
    when they are the cause, non-finite input images."""
    terms = ", ".join(f"{k} {float(torch.as_tensor(v).detach()):.4g}" for k, v in parts.items())
    where = f"at epoch {epoch + 1}, iteration {iteration + 1}"
    cause = ("the input images are not finite (check input.pixel_mean and input.pixel_std)"
             if not bool(torch.isfinite(images).all())
             else "try a lower optimizer.lr, train.grad_clip > 0 or train.amp=off")
    return NonFiniteLossError(
        f"training loss is {float(total.detach()):.4g} {where}" + (f" ({terms})" if terms else "")
        + f"; stopped before applying it (checkpoints already written are unchanged); {cause}"
    )


def check_finite_weights(model: torch.nn.Module, where: str) -> None:
    """Raise :class:`NonFiniteWeightsError` when a floating-point parameter or buffer of ``model``
    (BatchNorm statistics included) holds NaN or inf; ``where``: e.g. ``after epoch 3``. One pass
    over the weights (about 35 ms for ResNet-50's 25M numbers on one CPU thread), one sync."""
    tensors = [(name, t) for name, t in [*model.named_parameters(), *model.named_buffers()]
               if t.is_floating_point() and t.numel()]
    if not tensors:
        return
    peak = torch.stack([t.detach().abs().amax().float() for _, t in tensors])  # NaN propagates
    finite = torch.isfinite(peak)
    if bool(finite.all()):
        return
    bad = [name for (name, _), ok in zip(tensors, finite.tolist()) if not ok]
    raise NonFiniteWeightsError(
        f"model weights are not finite {where}: {len(bad)} of {len(tensors)} tensors hold NaN or infinite values "
        f"({_keys(bad)}); stopped before evaluating or saving them (checkpoints already written are unchanged); "
        "try a lower optimizer.lr, train.grad_clip > 0 or train.amp=off"
    )


class LossWatch:
    """Remembers the first training loss and warns once, in one line, when a later one exceeds
    ``factor`` times it (a diverging run still reports numbers; this says they mean little)."""

    def __init__(self, log: logging.Logger, factor: float = DIVERGENCE_FACTOR):
        self.log, self.factor = log, float(factor)
        self.first: float | None = None
        self.warned = False

    def __call__(self, loss: float, epoch: int, iteration: int) -> bool:
        """Record ``loss`` at (0-based) ``epoch``, ``iteration``; returns whether it warned now."""
        if self.first is None:
            if math.isfinite(loss) and loss > 0:
                self.first = loss
            return False
        if self.warned or loss <= self.factor * self.first:
            return False
        self.warned = True
        self.log.warning(
            f"warning: training loss {loss:.4g} at epoch {epoch + 1}, iteration {iteration + 1} is over "
            f"{self.factor:g}x its first value {self.first:.4g}: the run is diverging; try a lower "
            "optimizer.lr or train.grad_clip > 0"
        )
        return True


# ----------------------------------------------------------------------------------- checkpoints


def _keys(keys: list[str]) -> str:
    shown = ", ".join(keys[:LISTED_KEYS])
    return shown + (f", ... ({len(keys) - LISTED_KEYS} more)" if len(keys) > LISTED_KEYS else "")


def state_mismatch(model: torch.nn.Module, state: Mapping[str, Any]) -> str:
    """What keeps ``state`` from loading into ``model``: the first missing and unexpected keys and
    the first shape mismatch ("" when the keys and shapes agree)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and hasattr(state[k], "shape")
              and tuple(state[k].shape) != tuple(own[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({_keys(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({_keys(unexpected)})")
    if shapes:
        k = shapes[0]
        more = f" (and {len(shapes) - 1} more shape mismatches)" if len(shapes) > 1 else ""
        parts.append(f"shape mismatch: {k} is {list(state[k].shape)} in the checkpoint, "
                     f"{list(own[k].shape)} in the model{more}")
    return "; ".join(parts)


def load_model_state(model: torch.nn.Module, state: Mapping[str, Any], source: str | os.PathLike,
                     what: str, num_classes: tuple[int | None, int] | None = None) -> None:
    """``model.load_state_dict(state)``; a mismatch is a :class:`CheckpointError` naming ``source``,
    ``what`` the model is, the first missing/unexpected keys and shape mismatch, and, with
    ``num_classes`` = (checkpoint's, data set's), differing classifier sizes."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = state_mismatch(model, state) or str(exc).strip().splitlines()[0]
        saved, current = num_classes or (None, None)
        if saved is not None and saved != current:
            detail += f"; the checkpoint was trained on {saved} identities, this data set has {current}"
        raise CheckpointError(f"{source}: does not fit {what}: {detail}") from None


# ------------------------------------------------------------------------------------ resuming

#: Config keys that say where and how a run executes, not what it trains: free to change on resume.
NOT_RECIPE = ("output_dir", "data.cache_dir", "data.workers", "data.on_device", "dataset.root", "device",
              "train.log_period", "reference")
#: Keys only the initial weights depend on (a resumed run loads its weights from the checkpoint).
INITIALISATION = ("pretrained", "weights")
#: Sections the checkpoint's weights were trained for: a change is refused on resume.
CONTRACT = ("model", "input")


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def recipe_changes(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, stored value, current value)`` of every recipe key that differs between the config
    stored in a checkpoint and the current one (``<absent>`` for a key one of them lacks), in
    :data:`NOT_RECIPE` and initialisation-only keys left out."""
    old, new = _flat(stored), _flat(current)
    changes = []
    for key in sorted(set(old) | set(new)):
        if _under(key, NOT_RECIPE) or key.rsplit(".", 1)[-1] in INITIALISATION:
            continue
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if a != b:
            changes.append((key, a, b))
    return changes


def check_recipe(stored: Any, current: Mapping[str, Any], source: str | os.PathLike,
                 log: logging.Logger) -> list[tuple[str, Any, Any]]:
    """Compare the config stored in the checkpoint ``source`` with the current one on resume: a
    change of the model or input contract (:data:`CONTRACT`) is a :class:`CheckpointError`; other
    recipe changes are logged in one warning line with the old and new values. Returns the changes."""
    if not isinstance(stored, Mapping):
        return []
    changes = recipe_changes(stored, current)
    listed = lambda items: ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in items)  # noqa: E731
    contract = [c for c in changes if _under(c[0], CONTRACT)]
    if contract:
        raise CheckpointError(f"{source}: was trained with another model or input than this config has "
                              f"({listed(contract)}; checkpoint -> config); resume with the checkpoint's values, or "
                              "start a new run (--overwrite or another output_dir)")
    if changes:
        log.warning(f"warning: resuming with a changed recipe ({listed(changes)}; checkpoint -> config); "
                    "the run continues with the config's values")
    return changes
