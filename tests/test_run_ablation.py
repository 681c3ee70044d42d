"""scripts/run_ablation.py trains a ladder of configs and writes one Markdown table beside the paper's."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ladder_writes_a_table_with_paper_numbers(tmp_path):
    rungs = ["configs/laganet/ablation/laganet_1_global.yaml", "configs/laganet/ablation/laganet_4_full.yaml"]
    out = tmp_path / "table.md"
    cmd = [sys.executable, "scripts/run_ablation.py", *rungs, "--out", str(out),
           "--output-root", str(tmp_path / "runs"),
           f"dataset={{name: synthetic, root: {tmp_path / 'data'}, num_ids: 12, num_test_ids: 6, images_per_id: 6}}",
           f"data.cache_dir={tmp_path / 'cache'}",
           "model.backbone={name: resnet18, last_stride: 1, pretrained: false}", "input.size=[64,32]",
           "model.embedding_dim=64", "sampler.num_ids=3", "train.epochs=1", "train.iters_per_epoch=2",
           "schedule.warmup_epochs=0"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = out.read_text().splitlines()
    assert lines[0].startswith("| rung | config | rank-1 | mAP")
    assert "laganet_1_global" in lines[2] and "93.92" in lines[2] and "83.21" in lines[2]
    assert "laganet_4_full" in lines[3] and "96.18" in lines[3] and "88.76" in lines[3]
    for row in lines[2:]:
        ours = float(row.split("|")[4])
        assert 0.0 <= ours <= 100.0
