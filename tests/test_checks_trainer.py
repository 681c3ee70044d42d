"""Trainer-side checks (issues 12, 23) on a tiny synthetic run: a NaN loss stops with a user error and
changes nothing, NaN weights stop the run before it is evaluated or saved, a diverging loss is
reported once, a checkpoint of another model / class count is described key by key, 'last' is
written before the final evaluation; the CLI takes overrides after ``--resume`` and stops on a bad
value before creating anything."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from nettools import tiny_run_overrides
from test_checks_run import Records

from reid.config import load_config
from reid.engine import Trainer
from reid.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from reid.engine.guards import NonFiniteLossError, NonFiniteWeightsError

ROOT = Path(__file__).resolve().parents[1]


def tiny(tmp_path: Path, *extra: str) -> list[str]:
    """Overrides for a seconds-long run: 24 synthetic identities, ResNet-18 at 64x32, 3 iterations."""
    return tiny_run_overrides(tmp_path, *extra)


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    return Trainer(load_config(None, tiny(tmp_path_factory.mktemp("checks"))))


def params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in model.parameters()])


def test_nan_loss_stops_with_a_user_error_and_changes_nothing(trainer, monkeypatch):
    """Losses 1, 500 (> 100x: one warning), NaN: the NaN step raises before the update."""
    values = iter([1.0, 500.0, float("nan")])
    seen: list[torch.Tensor] = []

    def losses(outputs, batch):
        zero = sum(p.sum() for p in trainer.model.parameters()) * 0  # a graph, no gradient signal
        value = torch.tensor(next(values))
        if value.isnan():
            seen.append(params(trainer.model))
        return zero + value, {"ce": value}

    monkeypatch.setattr(trainer, "losses", losses)
    monkeypatch.setitem(trainer.cfg.train, "iters_per_epoch", 3)
    with Records() as records, pytest.raises(NonFiniteLossError) as err:
        trainer.train_epoch(0)
    assert str(err.value).startswith("training loss is nan at epoch 1, iteration 3 (ce nan); stopped before applying")
    assert torch.equal(seen[0], params(trainer.model))  # the NaN step was not applied
    assert not (trainer.out / "checkpoints").exists()
    warnings = [m for m in records.messages if m.startswith("warning: training loss")]
    assert warnings == ["warning: training loss 500 at epoch 1, iteration 2 is over 100x its first value 1: "
                        "the run is diverging; try a lower optimizer.lr or train.grad_clip > 0"]


def test_resume_from_another_model_lists_keys_and_shapes(trainer, tmp_path):
    state = trainer.state(0)
    model = dict(state["model"])
    cls = next(k for k in model if k.endswith("classifier.weight"))
    model[cls] = torch.zeros(751, model[cls].shape[1])
    first = next(iter(model))
    model["extra." + first] = model.pop(first)
    save_checkpoint({**state, "model": model, "num_classes": 751}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError) as err:
        trainer.load(str(tmp_path / "other.pth"))
    assert str(err.value) == (
        f"{tmp_path / 'other.pth'}: does not fit model 'bot' of this config: 1 missing keys ({first}); "
        f"1 unexpected keys (extra.{first}); shape mismatch: {cls} is [751, {model[cls].shape[1]}] in the "
        f"checkpoint, [24, {model[cls].shape[1]}] in the model; the checkpoint was trained on 751 identities, "
        "this data set has 24")


def test_last_checkpoint_is_written_before_the_final_evaluation(trainer, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("evaluation failed")

    monkeypatch.setitem(trainer.cfg.train, "iters_per_epoch", 1)
    with monkeypatch.context() as patch:
        patch.setattr(trainer, "evaluate", fail)
        with pytest.raises(RuntimeError, match="evaluation failed"):
            trainer.fit()
    last = trainer.out / "checkpoints" / "last.pth"
    assert load_checkpoint(last)["epoch"] == 0  # the trained epoch survives the failed evaluation
    trainer.load("auto")
    assert trainer.start_epoch == 1
    summary = trainer.fit()  # nothing left to train: only the final evaluation runs
    assert 0 <= summary["final"]["mAP"] <= 1 and (trainer.out / "metrics.json").is_file()


def test_cli_override_after_resume_is_read_and_checked_before_any_work(tmp_path):
    out = tmp_path / "run"
    res = subprocess.run(
        [sys.executable, "tools/train.py", "--config", "configs/quickstart.yaml", "--resume", "auto",
         "train.epochs=0", f"output_dir={out}", f"data.cache_dir={tmp_path / 'cache'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 2, res.stderr
    assert res.stderr == "error: command line: key 'train.epochs' expects an integer >= 1, got 0\n"
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_non_finite_weights_stop_before_evaluation_and_checkpoints(trainer, tmp_path, monkeypatch):
    """A BatchNorm statistic turned NaN in epoch 2 (the train-mode loss stays finite): the run
    stops at that epoch's end; epoch 1's last.pth and best.pth are unchanged, epoch 2 is never
    evaluated. Steps and evaluation are stubs (no forward pass): the hooks run as in a real fit."""
    for key, value in (("epochs", 2), ("iters_per_epoch", 1), ("eval_period", 1)):
        monkeypatch.setitem(trainer.cfg.train, key, value)
    for attr, value in (("out", tmp_path), ("start_epoch", 0), ("best", {"mAP": -1.0, "epoch": -1}),
                        ("history", []), ("_partial", None)):
        monkeypatch.setattr(trainer, attr, value)
    evaluated: list[int | None] = []
    monkeypatch.setattr(trainer, "evaluate", lambda title, step=None, **kw: evaluated.append(step) or {"mAP": 0.5})
    name, var = next((n, b) for n, b in trainer.model.named_buffers() if n.endswith("running_var"))
    saved = var.clone()

    def step(batch, epoch, it):
        if epoch == 1:
            var[3] = float("nan")
        return {"loss": 1.0}

    monkeypatch.setattr(trainer, "run_step", step)
    try:
        with pytest.raises(NonFiniteWeightsError) as err:
            trainer.fit()
    finally:
        var.copy_(saved)
    assert str(err.value).startswith("model weights are not finite after epoch 2: 1 of ")
    assert f"tensors hold NaN or infinite values ({name}); stopped before evaluating or saving them" in str(err.value)
    assert evaluated == [1]
    for ckpt in ("last", "best"):
        state = load_checkpoint(tmp_path / "checkpoints" / f"{ckpt}.pth")
        assert state["epoch"] == 0 and torch.isfinite(state["model"][name]).all()
