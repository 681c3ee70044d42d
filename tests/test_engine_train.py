"""The trainer end to end on a tiny synthetic set: learning, outputs, exact resume, CLIs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from nettools import record_losses

from reid.config import load_config
from reid.engine import Trainer

ROOT = Path(__file__).resolve().parents[1]


def tiny(tmp_path: Path, *extra: str) -> list[str]:
    """Overrides for a seconds-long run: tiny synthetic set, ResNet-18 at 64x32."""
    return [
        f"output_dir={tmp_path / 'run'}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "dataset.name=synthetic",
        f"dataset.root={tmp_path / 'datasets'}",
        "dataset.num_ids=24", "dataset.num_test_ids=12", "dataset.images_per_id=8",
        "input.size=[64,32]",
        "sampler.num_ids=4", "sampler.num_instances=4",
        "model.name=bot", "model.backbone={name: resnet18, last_stride: 1, pretrained: false}",
        "optimizer.lr=1e-3", "schedule.warmup_epochs=0", "schedule.name=constant",
        "train.epochs=2", "train.iters_per_epoch=4", "test.batch_size=64",
        *extra,
    ]


def params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.state_dict().values() if p.dtype.is_floating_point])


@pytest.mark.cuda_capable
def test_fit_writes_every_output(tmp_path, device):
    cfg = load_config(ROOT / "configs" / "quickstart.yaml",
                      tiny(tmp_path, "train.eval_before=true", f"device={device}"))
    summary = Trainer(cfg).fit()
    out = tmp_path / "run"
    for name in ("config.yaml", "log.txt", "metrics.json", "checkpoints/last.pth", "checkpoints/best.pth"):
        assert (out / name).is_file(), name
    assert list((out / "tb").glob("events.*"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["before"] is not None and 0 <= metrics["final"]["mAP"] <= 1
    assert set(summary["final"]) >= {"rank1", "rank5", "rank10", "mAP", "mINP"}
    assert load_config(out / "config.yaml") == cfg  # the resolved config re-runs the experiment


@pytest.mark.cuda_capable
def test_resume_continues_exactly(tmp_path, device):
    on = f"device={device}"
    straight = Trainer(load_config(None, tiny(tmp_path / "a", on)))
    straight.fit()
    first = Trainer(load_config(None, tiny(tmp_path / "b", "train.epochs=1", on)))
    first.fit()
    resumed = Trainer(load_config(None, tiny(tmp_path / "b", on)), resume=str(tmp_path / "b/run/checkpoints/last.pth"))
    assert resumed.start_epoch == 1
    resumed.fit()
    assert torch.allclose(params(straight.model), params(resumed.model), atol=1e-6)


def test_training_lowers_the_loss(tmp_path):
    cfg = load_config(None, tiny(tmp_path, "train.epochs=1", "train.iters_per_epoch=30", "augment.erasing.prob=0"))
    trainer = Trainer(cfg)
    losses = record_losses(trainer)
    for epoch in range(3):  # 12 batches per epoch
        trainer.train_epoch(epoch)
    assert len(losses) == 36 and sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_cli_user_errors_have_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("_base_: " + str(ROOT / "configs/quickstart.yaml") + "\ntrain: {epohcs: 3}\n")
    res = run_tool("tools/train.py", "--config", str(bad))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and "did you mean 'train.epochs'" in res.stderr
    market = tmp_path / "market.yaml"
    market.write_text(f"_base_: {ROOT / 'configs/quickstart.yaml'}\n"
                      f"dataset: {{_delete_: true, name: market1501, root: {tmp_path}}}\n")
    res = run_tool("tools/train.py", "--config", str(market))
    assert res.returncode == 2 and "Traceback" not in res.stderr and "bounding_box_train" in res.stderr
    res = run_tool("tools/test.py", "--config", "configs/quickstart.yaml", "--checkpoint", str(tmp_path / "x.pth"))
    assert res.returncode == 2 and "Traceback" not in res.stderr and "not found" in res.stderr


def test_train_then_test_cli(tmp_path):
    res = run_tool("tools/train.py", "--config", "configs/quickstart.yaml", *tiny(tmp_path, "train.epochs=1"))
    assert res.returncode == 0, res.stderr[-2000:]
    ck = tmp_path / "run" / "checkpoints" / "last.pth"
    res = run_tool("tools/test.py", "--config", "configs/quickstart.yaml", "--checkpoint", str(ck), "--flip",
                   "--save-ranks", "4", *tiny(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "mAP" in res.stdout
    saved = json.loads((tmp_path / "run" / "test_metrics.json").read_text())
    assert saved["flip"] is True and 0 <= saved["metrics"]["mAP"] <= 1
    lines = (tmp_path / "run" / "per_query.csv").read_text().splitlines()
    assert lines[0] == "path,pid,camid,ap,first_match_rank" and len(lines) > 1
    from PIL import Image

    with Image.open(tmp_path / "run" / "ranked_lists.png") as fig:
        assert fig.height > 4 * 32  # four query rows of 32-pixel-high images


def test_summary_prints_parameter_counts(tmp_path):
    res = run_tool("tools/train.py", "--config", "configs/quickstart.yaml", "--summary", *tiny(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    n = sum(p.numel() for p in __import__("reid.models", fromlist=["build_model"]).build_model(
        load_config(None, tiny(tmp_path)).model, 24).parameters())
    assert f"{n:,}" in res.stdout or str(n) in res.stdout
    assert "classifier: 24 training identities (counted under" in res.stdout
    assert "train step:" in res.stdout and "per batch of 16 at 64x32" in res.stdout


def test_summary_without_the_data_uses_the_published_count(tmp_path):
    """A body config whose data set is absent still builds (751 Market classes) and times a step."""
    res = run_tool("tools/train.py", "--config", "configs/bot/market1501.yaml", "--summary", "--summary-steps", "1",
                   f"dataset.root={tmp_path / 'nowhere'}", "model.backbone.name=resnet18",
                   "input.size=[64,32]", "sampler.num_ids=2", "sampler.num_instances=2")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "classifier: 751 training identities (the published market1501 count" in res.stdout
    assert "Traceback" not in res.stderr and "per batch of 4 at 64x32" in res.stdout


def test_step_timer_runs_the_configured_losses_and_updates_weights():
    from reid.engine.step_time import random_batch, time_train_step
    from reid.models import build_model

    cfg = load_config(ROOT / "configs" / "mmga" / "market1501.yaml", [
        "model.backbone={name: resnet18, last_stride: 1, pretrained: false}", "input.size=[128,64]",
        "sampler.num_ids=2", "sampler.num_instances=2", "device=cpu"])
    batch = random_batch(cfg, torch.device("cpu"))
    assert batch["images"].shape == (4, 3, 128, 64) and batch["pids"].tolist() == [0, 0, 1, 1]
    assert batch["masks"].shape == (4, 3, 128, 64)
    model = build_model(cfg.model, 3, input_size=cfg.input.size)
    before = params(model)
    t = time_train_step(cfg, model, steps=1, warmup=0)
    assert t["batch"] == 4 and t["size"] == (128, 64) and t["seconds"] > 0
    assert t["images_per_s"] == pytest.approx(4 / t["seconds"])
    assert not torch.equal(before, params(model))  # the mask loss and the rest took a real step


@pytest.mark.parametrize("bad", ["optimizer.lr=abc", "model.backbone.name=resnet5"])
def test_cli_bad_values(tmp_path, bad):
    res = run_tool("tools/train.py", "--config", "configs/quickstart.yaml", bad)
    assert res.returncode == 2 and "Traceback" not in res.stderr
