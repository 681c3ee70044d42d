"""Trainer hooks: what happens around the training steps, one concern per hook.

:class:`reid.engine.Trainer` calls each hook of ``Trainer.build_hooks()``, in list order, at five
points::

    fit():  before_train()
            for each epoch:  train_epoch(epoch):  before_epoch(stats)
                                                  each step: after_step(stats, it, values)
                                                  after_epoch(stats)
            after_train()
            (then metrics.json)

``stats`` is the epoch's :class:`EpochStats` (loss sums, images seen, lr, notes for its log line,
the evaluation record); hooks pass results along on it in list order. ``train_epoch`` called
on its own (outside ``fit``) runs the epoch hooks too; the built-in evaluation and checkpoint hooks
act only while ``fit`` runs (``trainer.fitting``), on ``fit``'s schedule.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class EpochStats:
    """One epoch's running record (0-based ``epoch``; ``iters`` steps, the first ``skip`` done
    before a Ctrl-C resume)."""

    epoch: int
    iters: int
    lr: float
    skip: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    seen: int = 0  # images of this process's batches stepped in this run of the epoch
    stopped: int = 0  # Ctrl-C: steps done when the epoch was cut short (0: ran to its end)
    rng: Any = None  # Ctrl-C resume: the random state to restore at step ``skip``
    start: float = field(default_factory=time.perf_counter)
    means: dict[str, float] = field(default_factory=dict)  # set at the epoch's end
    notes: list[str] = field(default_factory=list)  # "(...)" remarks on the epoch's log line
    record: dict[str, Any] | None = None  # this epoch's evaluation: {epoch, metrics..., val?}
    score: float | None = None  # the number best-model selection compares (test or val mAP)

    def add(self, values: dict[str, float], images: int) -> None:
        self.seen += images
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def images_per_second(self, world_size: int = 1, elapsed: float | None = None) -> float:
        return self.seen * world_size / max(self.elapsed() if elapsed is None else elapsed, 1e-9)

    def finish(self, batches: int) -> dict[str, float]:
        """Mean loss terms over the epoch's steps (the loader has ``batches`` batches)."""
        done = max(1, min(self.iters, batches))
        self.means = {k: v / done for k, v in self.sums.items()}
        return self.means


class HookBase:
    """A hook: override the points you need; ``self.trainer`` is set when the trainer takes it."""

    trainer: Any  # the reid.engine.Trainer that took the hook (hooks import nothing of the trainer)

    def before_train(self) -> None:
        """``fit`` starts (after a resume, from ``trainer.start_epoch``)."""

    def before_epoch(self, stats: EpochStats) -> None:
        """An epoch's training pass starts (lr set, model in train mode)."""

    def after_step(self, stats: EpochStats, it: int, values: dict[str, float]) -> None:
        """Step ``it`` (0-based in the epoch) updated the model; ``values``: its loss terms."""

    def after_epoch(self, stats: EpochStats) -> None:
        """The epoch's steps are done (``stats.means`` set)."""

    def after_train(self) -> None:
        """The last epoch is done; ``fit`` writes metrics.json after this."""


# ------------------------------------------------------------------------------ the built-ins


class LossStatistics(HookBase):
    """Counters kept by loss modules (an attribute ``missing``, e.g. the MMGA mask loss's samples
    without a mask): reset at each epoch start, their sum noted on the epoch's log line."""

    def before_epoch(self, stats: EpochStats) -> None:
        losses = self.trainer.losses
        self.counters = [m for m in (losses.modules() if isinstance(losses, torch.nn.Module) else [])
                         if hasattr(m, "missing")]
        for m in self.counters:
            m.missing = 0

    def after_epoch(self, stats: EpochStats) -> None:
        if self.counters:
            stats.notes.append(f"samples without a mask: {sum(int(m.missing) for m in self.counters)}")


class TrainLogger(HookBase):
    """The loss watch (diverging runs), TensorBoard ``train/*`` scalars every ``train.log_period``
    steps, and one log line per epoch (mean loss terms, lr, notes, throughput); rank 0 only."""

    def after_step(self, stats: EpochStats, it: int, values: dict[str, float]) -> None:
        t = self.trainer
        if not t.is_main:
            return
        t.loss_watch(values["loss"], stats.epoch, it)
        if (it + 1) % max(1, int(t.cfg.train.log_period)) == 0:
            step = stats.epoch * stats.iters + it
            for k, v in values.items():
                t.scalars.add(f"train/{k}", v, step)
            t.scalars.add("train/lr", stats.lr, step)

    def after_epoch(self, stats: EpochStats) -> None:
        t = self.trainer
        if not t.is_main:
            return
        terms = " ".join(f"{k} {v:.4f}" for k, v in stats.means.items())
        terms += "".join(f" ({note})" for note in stats.notes)
        elapsed = stats.elapsed()
        t.log.info(f"epoch {stats.epoch + 1}/{t.cfg.train.epochs} lr {stats.lr:.2e} {terms} "
                   f"({stats.images_per_second(t.world_size, elapsed):.0f} img/s, {elapsed:.1f}s)")
        t.scalars.add("epoch/loss", stats.means.get("loss", math.nan), stats.epoch + 1)


def _last_epoch(trainer: Any, stats: EpochStats) -> bool:
    return stats.epoch == int(trainer.cfg.train.epochs) - 1


class Checkpointer(HookBase):
    """``checkpoints/last.pth`` every ``train.checkpoint_period`` epochs and after the last one.

    Listed twice: before the evaluation (a failing evaluation loses no training) and, with
    ``evaluated=True``, after it, to store the evaluation's record (an epoch without one is not
    written twice)."""

    def __init__(self, evaluated: bool = False):
        self.evaluated = evaluated

    def after_epoch(self, stats: EpochStats) -> None:
        t = self.trainer
        due = (stats.epoch + 1) % max(1, int(t.cfg.train.checkpoint_period)) == 0 or _last_epoch(t, stats)
        if t.fitting and due and (stats.record is not None or not self.evaluated):
            t.save("last", stats.epoch)


class Evaluation(HookBase):
    """``train.eval_before``; every ``train.eval_period`` epochs and after the last: the test
    metrics, with ``train.select_on: val`` the validation metrics too (their ``train.select_metric``,
    mAP or rank1, is the score);
    each record goes to ``trainer.history``. A ``fit`` whose last epoch was not evaluated by it (a
    resume after the last epoch) ends with a ``final`` evaluation. ``trainer.final``: the latest."""

    def before_train(self) -> None:
        t = self.trainer
        t.final, self.last = None, -1
        if t.cfg.train.eval_before and t.before is None:
            t.before = t.evaluate("before training")

    def after_epoch(self, stats: EpochStats) -> None:
        t = self.trainer
        period = int(t.cfg.train.eval_period)
        if not t.fitting or not (period and (stats.epoch + 1) % period == 0 or _last_epoch(t, stats)):
            return
        step = stats.epoch + 1
        t.final = t.evaluate(f"epoch {step}", step=step)
        key = str(t.cfg.train.select_metric)  # mAP, or rank1 (BDB's release keeps the best rank-1)
        stats.record, stats.score = {"epoch": step, **t.final}, t.final[key]
        if t.val_evaluator is not None:
            val = t.evaluate(f"epoch {step} (validation)", step=step, evaluator=t.val_evaluator, tag="val")
            stats.record["val"], stats.score = val, val[key]
        t.history.append(stats.record)
        self.last = stats.epoch

    def after_train(self) -> None:
        t = self.trainer
        if t.final is None or self.last != int(t.cfg.train.epochs) - 1:
            t.final = t.evaluate("final")


class BestModel(HookBase):
    """Model selection: an evaluated epoch whose score beats ``trainer.best`` becomes the best
    (``selected_on``: ``train.select_on``) and is saved as ``checkpoints/best.pth``."""

    def after_epoch(self, stats: EpochStats) -> None:
        t = self.trainer
        if not t.fitting or stats.record is None:
            return
        if stats.score > t.best.get("score", t.best["mAP"]):
            t.best = {**stats.record, "score": stats.score, "selected_on": t.cfg.train.select_on,
                      "selected_by": t.cfg.train.select_metric}
            t.save("best", stats.epoch)


def default_hooks() -> list[HookBase]:
    """The trainer's hooks, in calling order (the order is part of the behaviour: notes before the
    log line, 'last' before and after the evaluation, selection after it)."""
    return [LossStatistics(), TrainLogger(), Checkpointer(), Evaluation(), BestModel(),
            Checkpointer(evaluated=True)]
