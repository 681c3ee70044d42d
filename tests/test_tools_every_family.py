"""Every network family trains from its Market-1501 config through tools/train.py and evaluates its
checkpoint through tools/test.py (ResNet-18 trunk, 96x48, a tiny synthetic set with part masks).

The scripts run as ``__main__`` inside the test process (two interpreter start-ups saved per
family); the same commands as new processes are run by ``test_engine_train.test_train_then_test_cli``."""
from __future__ import annotations

import json
import runpy
import sys
from types import SimpleNamespace
from unittest import mock

import pytest
from nettools import ROOT

FAMILIES = ("bot", "pcb", "mgn", "fusion", "laganet", "rganet", "lagnet", "bdb", "mmga")


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One synthetic data set and image-store cache for all families."""
    return tmp_path_factory.mktemp("every_family")


def run(*args: str) -> SimpleNamespace:
    """Run the tool ``args[0]`` as ``__main__`` with the remaining arguments: (returncode, stderr)."""
    script = str(ROOT / args[0])
    with mock.patch.object(sys, "argv", [script, *args[1:]]):
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as stop:
            return SimpleNamespace(returncode=stop.code or 0, stderr="(in-process run: see the captured output)")
    return SimpleNamespace(returncode=0, stderr="")


@pytest.mark.parametrize("family", FAMILIES)
def test_train_then_test_through_the_tools(family, shared, tmp_path):
    config = f"configs/{family}/market1501.yaml"
    overrides = [
        f"dataset={{name: synthetic, root: {shared / 'data'}, num_ids: 8, num_test_ids: 4, images_per_id: 6}}",
        f"data.cache_dir={shared / 'cache'}", "data.workers=1", "device=cpu",
        "model.backbone={name: resnet18, last_stride: 1, pretrained: false}", "input.size=[96,48]",
        "sampler.num_ids=2", "sampler.num_instances=2", "train.epochs=1", "train.iters_per_epoch=2",
        "train.eval_before=false", "schedule.warmup_epochs=0", "test.batch_size=32",
        *(["train.shards=2"] if family == "bdb" else []),  # BDB's 4 shards would leave 1 image each of 4
    ]
    out = tmp_path / "run"
    trained = run("tools/train.py", "--config", config, "--output-dir", str(out), *overrides)
    assert trained.returncode == 0, trained.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())["final"]
    assert 0.0 <= metrics["mAP"] <= 1.0 and 0.0 <= metrics["rank1"] <= 1.0

    tested = run("tools/test.py", "--config", config, "--checkpoint", str(out / "checkpoints" / "last.pth"),
                 "--output-dir", str(tmp_path / "test"), *overrides)
    assert tested.returncode == 0, tested.stderr[-3000:]
    again = json.loads((tmp_path / "test" / "test_metrics.json").read_text())["metrics"]
    assert again["mAP"] == pytest.approx(metrics["mAP"], abs=1e-6)  # the checkpoint reproduces the run's figures
