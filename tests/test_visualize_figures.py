"""tools/visualize.py end to end on a tiny checkpoint and a fake run folder: files, pixel sizes, what
is read from a run folder, and the message when matplotlib is missing."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reid.config import load_config
from reid.engine.checkpoint import save_checkpoint, to_plain
from reid.models import build_model
from reid.registry import UserError
from reid.visualize.figures import INSTALL_HINT, PlotUnavailable, attention_grid_size, require_matplotlib
from reid.visualize.runs import metrics_cmc, read_scalars, training_series

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("visualize_cli", ROOT / "tools" / "visualize.py")
cli = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cli)


@pytest.fixture(scope="module")
def bot_checkpoint(tmp_path_factory) -> Path:
    """BoT-ResNet-18 at 64x32 (configs/quickstart.yaml), random init, saved as tools/train.py does."""
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    torch.manual_seed(0)
    model = build_model(cfg.model, 7, input_size=cfg.input.size)
    path = tmp_path_factory.mktemp("run") / "model.pth"
    save_checkpoint({"model": model.state_dict(), "config": to_plain(cfg.to_dict()), "num_classes": 7}, path)
    return path


def write_images(folder: Path, sizes) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate(sizes):
        p = folder / f"{i:04d}_c1s1_000000_00.jpg"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def test_attention_cli_writes_one_labelled_grid_of_the_expected_size(bot_checkpoint, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    images = write_images(tmp_path, [(128, 64), (100, 40), (64, 32)])  # any size: resized to 64x32
    out = tmp_path / "att.png"
    assert cli.main(["attention", "--checkpoint", str(bot_checkpoint), "--images", *images, "--out", str(out),
                     "--cam-target", "norm"]) == 0
    # BoT has no spatial attention: image + Grad-CAM columns, no notes
    with Image.open(out) as im:
        assert im.size == attention_grid_size(rows=3, cols=2)
    assert "wrote" in capsys.readouterr().out


def test_missing_matplotlib_says_what_to_install(monkeypatch, bot_checkpoint, tmp_path):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(PlotUnavailable, match=INSTALL_HINT.replace("[", r"\[").replace("]", r"\]")):
        require_matplotlib()
    with pytest.raises(PlotUnavailable):  # the CLI refuses before loading anything
        cli.main(["curves", "--run", str(tmp_path), "--out", str(tmp_path / "c.png")])
    assert not (tmp_path / "c.png").exists()


def fake_run(folder: Path, with_tb: bool) -> Path:
    history = [{"epoch": 1, "rank1": 0.2, "rank5": 0.4, "rank10": 0.5, "mAP": 0.1},
               {"epoch": 2, "rank1": 0.3, "rank5": 0.5, "rank10": 0.6, "mAP": 0.15}]
    (folder / "metrics.json").write_text(json.dumps({"final": history[-1], "best": history[-1], "history": history}))
    (folder / "log.txt").write_text(
        "10:00:00 epoch 1/2 lr 3.50e-04 loss 6.5000 ce 6.0000 triplet 0.5000 (100 img/s, 3.0s)\n"
        "10:00:01 rank-1 20.0% | mAP 10.0%\n"
        "10:00:05 epoch 2/2 lr 1.75e-04 loss 5.2500 ce 5.0000 triplet 0.2500 (100 img/s, 3.0s)\n")
    if with_tb:
        from torch.utils.tensorboard import SummaryWriter

        w = SummaryWriter(str(folder / "tb"))
        for step, lr in enumerate([1.0, 0.5, 0.25, 0.125]):  # 2 iterations per epoch
            w.add_scalar("train/lr", lr, step)
            w.add_scalar("train/loss", 9.0 - step, step)
        w.add_scalar("epoch/loss", 7.0, 1)
        w.add_scalar("epoch/loss", 6.0, 2)
        w.close()
    return folder


def test_training_series_from_log_text_and_metrics_history(tmp_path):
    series = training_series(fake_run(tmp_path, with_tb=False))
    assert series["loss"]["loss"] == ([1.0, 2.0], [6.5, 5.25])
    assert series["lr"]["lr"] == ([1.0, 2.0], [3.5e-4, 1.75e-4])
    assert series["evaluation (%)"]["mAP"] == ([1.0, 2.0], [10.0, 15.0])
    assert series["evaluation (%)"]["rank-1"] == ([1.0, 2.0], [20.0, 30.0])


def test_training_series_prefers_tensorboard_scalars(tmp_path):
    run = fake_run(tmp_path, with_tb=True)
    assert read_scalars(run)["train/lr"] == ([0.0, 1.0, 2.0, 3.0], [1.0, 0.5, 0.25, 0.125])
    series = training_series(run)
    assert series["loss"]["loss"] == ([1.0, 2.0], [7.0, 6.0])
    assert series["lr"]["lr"] == ([0.0, 0.5, 1.0, 1.5], [1.0, 0.5, 0.25, 0.125])  # steps -> epochs


def test_curves_and_cmc_figures_from_run_folders(tmp_path):
    pytest.importorskip("matplotlib")
    runs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        runs.append(str(fake_run(tmp_path / name, with_tb=False)))
    assert metrics_cmc(runs[0]) == ([1, 5, 10], [0.3, 0.5, 0.6])
    for argv in (["curves", "--run", runs[0]], ["cmc", "--runs", *runs, "--names", "A", "B"]):
        out = tmp_path / f"{argv[0]}.png"
        assert cli.main([*argv, "--out", str(out)]) == 0
        with Image.open(out) as im:
            assert im.size[0] > 200 and im.size[1] > 150


def hand_ranking(name: str, protocol: str = "market"):
    """3 queries x 4 gallery images (8x4 pixels); query 2's identity is only seen by its own camera."""
    from reid.config import Config
    from reid.data.datasets.base import ReidDataset
    from reid.visualize.ranking import Ranking

    dist = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [0.1, 0.5, 0.5, 0.5]])
    return Ranking(name, Config.wrap({"model": {"name": "bot"}, "dataset": {"name": "toy"}}),
                   ReidDataset("toy", train=[], query=[], gallery=[], protocol=protocol), dist,
                   np.array([1, 2, 3]), np.array([1, 2, 1, 3]), np.array([0, 0, 0]), np.array([1, 1, 1, 0]),
                   np.zeros((3, 8, 4, 3), np.uint8), np.full((4, 8, 4, 3), 200, np.uint8))


def test_ranking_cmc_and_valid_queries_by_hand():
    r = hand_ranking("a")
    assert r.valid_queries().tolist() == [True, True, False]  # query 2 (pid 3, cam 0): gallery pid 3 is cam 0
    # query 0: first true match (g0) at rank 1; query 1: nearest is g3 (pid 3), then g2 (pid 1), g1 (pid 2): rank 3
    assert r.cmc(4).tolist() == [0.5, 0.5, 1.0, 1.0]


def test_ranked_per_dataset_and_cmc_commands_draw_the_rankings(monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    from reid.visualize import ranking

    monkeypatch.setattr(ranking, "rank_checkpoint", lambda ck, *a, name=None, **k: hand_ranking(name or str(ck)))
    ck = tmp_path / "model.pth"
    ck.write_bytes(b"")
    for argv in (["ranked", "--checkpoints", str(ck), str(ck), "--queries", "2", "--topk", "3"],
                 ["per-dataset", "--runs", str(ck), str(ck), "--topk", "3"],
                 ["per-dataset", "--runs", str(ck), str(ck), "--names", "a long name for the first run", "B"],
                 ["cmc", "--runs", str(ck), str(ck), "--names", "A", "B", "--evaluate", "--max-rank", "4"]):
        out = tmp_path / f"{argv[0]}.png"
        assert cli.main([*argv, "--out", str(out)]) == 0
        assert out.stat().st_size > 0
    with pytest.raises(UserError, match="--names: 1 names for 2 runs"):
        cli.main(["per-dataset", "--runs", str(ck), str(ck), "--names", "A", "--out", str(tmp_path / "x.png")])
