"""Run-time checks of a training run: its folders before any work, the loss while it trains, the
weights at each epoch's end, and checkpoints that do not fit the model. Each failure is a
:class:`~reid.registry.UserError` (one ``error:`` line from the command-line tools)."""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from reid.evaluation.finite import NonFiniteError
from reid.registry import UserError

from .checkpoint import CheckpointError

#: A training loss above this multiple of its first value is reported (once) as diverging.
DIVERGENCE_FACTOR = 100.0
#: Keys listed per kind in a state-dict mismatch message.
LISTED_KEYS = 3


class NonFiniteLossError(NonFiniteError):
    """The training loss became NaN or infinite; the step was not applied and nothing was saved."""


class NonFiniteWeightsError(NonFiniteError):
    """The model's parameters or buffers became NaN or infinite while training; the run stopped
    before they were evaluated or saved."""


class RunPathError(UserError, OSError):
    """An output or cache folder that cannot be created or written, or a checkpoint to resume
    that does not exist."""


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


def resume_path(output_dir: str | os.PathLike, resume: str) -> Path:
    """The checkpoint ``--resume`` names (``auto``: ``<output_dir>/checkpoints/last.pth``)."""
    return Path(output_dir) / "checkpoints" / "last.pth" if resume == "auto" else Path(resume)


def check_run_paths(cfg: Any, resume: str | None = None) -> None:
    """What a training run needs from the file system, checked before any work: ``output_dir`` and
    ``data.cache_dir`` can be created and written, and the checkpoint to resume exists."""
    check_folder(cfg.output_dir, "output_dir")
    check_folder(cfg.data.cache_dir, "data.cache_dir", must_write=False)
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
