"""Trainer hooks (issue 13, item 6): a hook a subclass adds through ``build_hooks`` is called at
each point in order, after the built-ins it follows; the worked example of
docs/extending_training.md runs as written."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from nettools import tiny_run_overrides

from reid.config import load_config
from reid.engine import HookBase, Trainer

ROOT = Path(__file__).resolve().parents[1]


def tiny(tmp_path: Path, *extra: str) -> list[str]:
    """Overrides for a seconds-long run: 8 synthetic identities, ResNet-18 at 32x16, 2 epochs of 2 steps."""
    return tiny_run_overrides(tmp_path, "data.workers=1", *extra, ids=8, test_ids=4, images_per_id=4,
                              size="[32,16]", p=2, k=2, epochs=2, iters=2)


class Recorder(HookBase):
    """Records every call; at the end of an epoch, what the built-in hooks before it left."""

    def __init__(self):
        self.calls: list[tuple] = []

    def before_train(self):
        self.calls.append(("before_train",))

    def before_epoch(self, stats):
        self.calls.append(("before_epoch", stats.epoch))

    def after_step(self, stats, it, values):
        self.calls.append(("after_step", stats.epoch, it, sorted(values)))

    def after_epoch(self, stats):
        last = self.trainer.out / "checkpoints" / "last.pth"
        evaluated = None if stats.record is None else stats.record["epoch"]
        self.calls.append(("after_epoch", stats.epoch, evaluated, last.is_file(), len(self.trainer.history)))

    def after_train(self):
        self.calls.append(("after_train", self.trainer.final is not None))


class RecordingTrainer(Trainer):
    def build_hooks(self):
        self.recorder = Recorder()
        return [*super().build_hooks(), self.recorder]


def test_a_hook_added_by_a_subclass_is_called_in_order(tmp_path):
    trainer = RecordingTrainer(load_config(None, tiny(tmp_path)))
    assert trainer.recorder.trainer is trainer
    summary = trainer.fit()
    terms = ["ce", "loss", "triplet"]
    assert trainer.recorder.calls == [
        ("before_train",),
        ("before_epoch", 0), ("after_step", 0, 0, terms), ("after_step", 0, 1, terms),
        ("after_epoch", 0, None, True, 0),  # not evaluated (eval_period 0); 'last' written before it
        ("before_epoch", 1), ("after_step", 1, 0, terms), ("after_step", 1, 1, terms),
        ("after_epoch", 1, 2, True, 1),  # the last epoch: evaluated before this hook runs
        ("after_train", True),
    ]
    assert summary["history"][0]["epoch"] == 2 and summary["final"] == trainer.final


def example_code() -> str:
    text = (ROOT / "docs" / "extending_training.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_the_worked_example_of_the_docs_runs(tmp_path):
    space: dict = {}
    exec(compile(example_code(), "docs/extending_training.md", "exec"), space)  # noqa: S102 - our own docs
    trainer = space["SGDTrainer"](load_config(None, tiny(tmp_path)))
    assert isinstance(trainer.optimizer, torch.optim.SGD) and trainer.optimizer.param_groups[0]["momentum"] == 0.9
    summary = trainer.fit()
    rows = json.loads((tmp_path / "run" / "lr.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2] and all(r["lr"] == 1e-3 for r in rows)
    assert _epoch_losses(tmp_path) == pytest.approx([r["loss"] for r in rows], abs=1e-4)
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "(1 rows in lr.json)" in log and "(2 rows in lr.json)" in log
    assert 0 <= summary["final"]["mAP"] <= 1 and (tmp_path / "run" / "checkpoints" / "best.pth").is_file()


def _epoch_losses(tmp_path: Path) -> list[float]:
    """The mean losses of the epoch log lines (4 decimals)."""
    log = (tmp_path / "run" / "log.txt").read_text()
    return [float(m) for m in re.findall(r" epoch \d/2 lr \S+ loss (\S+)", log)]
