"""MobileNetV2 real-image configs (configs/mobilenetv2) and scripts/bench_accuracy.py: every config
loads, points at the real mini benchmark and trains a step; the script writes its table for an
ImageNet-init and a random-init run and resumes from what it wrote."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from nettools import ROOT, batch_of, config_files, load, train_step, trainer_parts

CONFIGS = config_files("mobilenetv2")
RUNGS = ["laganet_1_global", "laganet_2_local", "laganet_3_cam", "laganet_4_full"]


def test_configs_present_and_on_the_mini_benchmark():
    names = {p.stem for p in CONFIGS}
    assert names == {"bot_market1501_mini", *RUNGS}
    for path in CONFIGS:
        cfg = load(path)
        assert cfg.dataset.name == "market1501" and cfg.dataset.root == "../shared/data/market1501-mini"
        assert cfg.model.backbone.name == "mobilenetv2" and cfg.model.backbone.pretrained is True
        assert cfg.input.size == [128, 64]
    flags = [tuple(load(ROOT / "configs/mobilenetv2/laganet_ladder" / f"{r}.yaml").model[k]
                   for k in ("use_local", "use_cam", "use_sam")) for r in RUNGS]
    assert flags == [(False, False, False), (True, False, False), (True, True, False), (True, True, True)]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_trains_a_step_from_random_init(path):
    cfg = load(path, "model.backbone.pretrained=false")
    size = tuple(cfg.input.size)
    model, losses, optimizer = trainer_parts(cfg, num_classes=4, input_size=size)
    total, parts = train_step(model, losses, optimizer, batch_of(2, 2, size))
    assert set(parts) == set(cfg.losses) and torch.isfinite(total)


def test_bench_accuracy_writes_both_inits_and_resumes(tmp_path):
    out = tmp_path / "acc.md"
    cmd = [sys.executable, "scripts/bench_accuracy.py", "--random-init", "--out", str(out),
           "--output-root", str(tmp_path / "runs"),
           f"dataset={{name: synthetic, root: {tmp_path / 'data'}, num_ids: 12, num_test_ids: 6, images_per_id: 6}}",
           f"data.cache_dir={tmp_path / 'cache'}", "model.backbone.name=resnet18", "input.size=[64,32]",
           "sampler.num_ids=3", "train.epochs=1", "train.iters_per_epoch=2", "schedule.warmup_epochs=0",
           "device=cpu"]
    # resnet18 "pretrained: true" would need the torch.hub file: the ImageNet row uses a local copy
    weights = tmp_path / "r18.pth"
    from reid.models.backbones.resnet import resnet18
    torch.save(resnet18(pretrained=False).state_dict(), weights)
    cmd.append(f"model.backbone.weights={weights}")
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [r for r in out.read_text().splitlines() if r.startswith("| bot_market1501_mini")]
    assert [r.split("|")[2].strip() for r in rows] == ["ImageNet", "random"]
    for row in rows:
        cells = [c.strip() for c in row.split("|")]
        assert 0.0 <= float(cells[6]) <= 100.0 and 0.0 <= float(cells[8]) <= 100.0  # R1, mAP
        assert float(cells[10]) >= 0 and float(cells[11]) > 0  # wall minutes, images/s
    record = json.loads((tmp_path / "runs" / "bot_market1501_mini_random_init" / "bench.json").read_text())
    assert set(record) == {"before", "final", "wall_s", "images_per_s"} and record["wall_s"] > 0
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "=> run" not in again.stdout  # read back, not retrained
    assert [r for r in out.read_text().splitlines() if r.startswith("| bot")] == rows
