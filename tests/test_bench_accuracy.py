"""MobileNetV2 real-image configs (configs/mobilenetv2) and scripts/bench_accuracy.py: every config
loads, points at the real mini benchmark and trains a step; the script writes its table for an
ImageNet-init and a random-init run and resumes from what it wrote; its torchreid peer side
(``--peer``) is driven through a stand-in peer Python (no peer environment needed)."""
from __future__ import annotations

import importlib.util
import json
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
from nettools import ROOT, batch_of, config_files, load, train_step, trainer_parts

CONFIGS = config_files("mobilenetv2")
BOT = ROOT / "configs/mobilenetv2/bot_market1501_mini.yaml"


def bench_module():
    spec = importlib.util.spec_from_file_location("bench_accuracy", ROOT / "scripts/bench_accuracy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
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
    assert [r.split("|")[3].strip() for r in rows] == ["ImageNet", "random"]
    for row in rows:
        cells = [c.strip() for c in row.split("|")]
        assert cells[2] == "reid" and cells[6] == "2"  # framework, iterations (2 per epoch x 1 epoch)
        assert 0.0 <= float(cells[8]) <= 100.0 and 0.0 <= float(cells[10]) <= 100.0  # R1, mAP
        assert float(cells[12]) >= 0 and float(cells[13]) > 0  # wall minutes, images/s
        start, end = (float(v) for v in cells[14].split(" / "))  # 1-minute load averages
        assert start >= 0 and end >= 0
    record = json.loads((tmp_path / "runs" / "bot_market1501_mini_random_init" / "bench.json").read_text())
    assert set(record) == {"framework", "before", "final", "wall_s", "iterations", "images_per_s", "load_start",
                           "load_end"} and record["wall_s"] > 0
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "=> run" not in again.stdout  # read back, not retrained
    assert [r for r in out.read_text().splitlines() if r.startswith("| bot")] == rows


# ------------------------------------------------------------------------- the torchreid peer

FAKE_PEER = """
import argparse, json, pathlib, numpy as np
p = argparse.ArgumentParser(); p.add_argument("script"); p.add_argument("--spec"); p.add_argument("--out")
p.add_argument("--workers")
a = p.parse_args()
out = pathlib.Path(a.out)
json.loads(pathlib.Path(a.spec).read_text())  # the spec must be valid JSON
# query i (pid i+1, camera 0) matches gallery i (same pid, camera 1) only: a perfect ranking
eye = np.eye(6, dtype=np.float32)
np.savez(out / "features.npz", qf=eye[:3], gf=eye, q_pids=np.array([1, 2, 3]),
         g_pids=np.array([1, 2, 3, 4, 5, 6]), q_camids=np.zeros(3, int), g_camids=np.ones(6, int))
record = {"framework": "torchreid 1.4.0", "before": None, "wall_s": 60.0, "iterations": 3, "images_per_s": 3.2,
          "final": {"rank1": 0.5, "rank5": 0.75, "mAP": 0.25}, "load_start": [1.0, 1, 1], "load_end": [2.0, 2, 2]}
(out / "peer.json").write_text(json.dumps(record))
"""


def fake_peer_python(tmp_path):
    """An executable standing in for the peer environment's Python: writes known outputs."""
    script = tmp_path / "fake_peer.py"
    script.write_text(FAKE_PEER)
    exe = tmp_path / "peer-python"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


def test_peer_spec_follows_the_config():
    bench = bench_module()
    cfg = load(BOT, "model.backbone.pretrained=false", "train.epochs=6", "augment.erasing.fill=zero")
    spec = bench.peer_spec(cfg, "cpu")
    # warmup over 2 epochs from 3.5e-5 to 3.5e-4, then cosine to 0 over the 4 remaining epochs
    expected = [0.1, 0.55, 1.0, 0.5 * (1 + np.cos(np.pi / 4)), 0.5, 0.5 * (1 + np.cos(3 * np.pi / 4))]
    assert np.allclose(spec["lr_factors"], expected)
    assert (spec["height"], spec["width"], spec["num_ids"], spec["num_instances"]) == (128, 64, 16, 4)
    assert spec["weights"] is None and spec["last_stride"] == 1 and spec["betas"] == [0.9, 0.999]
    assert np.allclose(spec["erasing"]["fill"], [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225])  # black
    assert spec["crop_prob"] == 1.0 and spec["metric"] == "cosine" and spec["normalize"] is True


def test_peer_spec_names_what_the_peer_cannot_train():
    bench = bench_module()
    cfg = load(BOT, "model.backbone.name=resnet18", "optimizer.name=sgd")
    with pytest.raises(bench.UserError, match="backbone is mobilenetv2; optimizer is adam"):
        bench.peer_spec(cfg, "cpu")


def test_missing_peer_python_says_how_to_create_it(tmp_path, monkeypatch):
    bench = bench_module()
    monkeypatch.delenv("REID_PEER_PYTHON", raising=False)
    with pytest.raises(bench.UserError, match="python3 -m venv") as err:
        bench.peer_python(str(tmp_path / "nowhere" / "python"))
    assert "pip install torch==2.14.1 torchvision==0.29.1" in str(err.value)
    monkeypatch.setenv("REID_PEER_PYTHON", str(tmp_path / "env-python"))
    with pytest.raises(bench.UserError, match="env-python"):
        bench.peer_python(None)


def test_peer_record_scored_by_reids_evaluator_and_tabled(tmp_path):
    bench = bench_module()
    cfg = load(BOT, "model.backbone.pretrained=false")
    record = bench.train_peer(cfg, tmp_path / "run_torchreid", fake_peer_python(tmp_path), "cpu", 0)
    assert record["reid_eval"]["rank1"] == 1.0 and record["reid_eval"]["mAP"] == 1.0
    assert record["final"] == {"rank1": 0.5, "rank5": 0.75, "mAP": 0.25, "mINP": 1.0}  # torchreid's + reid's mINP
    assert json.loads((tmp_path / "run_torchreid" / "bench.json").read_text()) == record
    assert json.loads((tmp_path / "run_torchreid" / "spec.json").read_text())["epochs"] == 16
    meta = {"name": "bot", "init": "random", "epochs": 16, "size": "128x64"}
    ours = {"framework": "reid", "before": {"rank1": 0.1, "mAP": 0.05}, "final": {"rank1": 0.6, "rank5": 0.8,
            "mAP": 0.4, "mINP": 0.1}, "wall_s": 30.0, "iterations": 4, "images_per_s": 8.5}
    text = bench.table([{**meta, **ours}, {**meta, **record}], "CPU")
    rows = [r for r in text.splitlines() if r.startswith("| bot")]
    assert rows == ["| bot | reid | random | 16 | 128x64 | 4 | 10.0 / 5.0 | 60.0 | 80.0 | 40.0 | 10.0 | 0.5 | 8.5 "
                    "| - |",
                    "| bot | torchreid 1.4.0 | random | 16 | 128x64 | 3 | - / - | 50.0 | 75.0 | 25.0 | 100.0 | 1.0 "
                    "| 3.2 | 1.00 / 2.00 |"]
    assert "- bot (random): 100.0 / 100.0 / 100.0 / 100.0" in text


def test_failed_peer_is_a_user_error(tmp_path):
    bench = bench_module()
    exe = tmp_path / "peer-python"
    exe.write_text("#!/bin/sh\nexit 3\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(bench.UserError, match="exit 3"):
        bench.train_peer(load(BOT, "model.backbone.pretrained=false"), tmp_path / "run", exe, "cpu", 0)


def test_a_starved_runs_rate_is_not_printed_as_zero():
    """A run starved by a loaded machine (0.3 images/s) printed "0" and failed the table's img/s > 0
    check on a loaded CI machine; rates below 10 keep two significant digits."""
    rate = bench_module().rate
    assert [rate(v) for v in (0.31, 0.004, 9.96, 123.4)] == ["0.31", "0.004", "10", "123"]
