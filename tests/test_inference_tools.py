"""tools/test.py --checkpoint alone, tools/extract.py, tools/search.py and tools/export.py, run
in-process on a tiny synthetic set and a randomly initialised checkpoint in the trainer's format."""
from __future__ import annotations

import csv
import json
import runpy
import sys

import numpy as np
import pytest
import torch
from inference_tools import ROOT, SIZE, save_tiny_checkpoint, tiny_overrides
from PIL import Image

from reid.engine.checkpoint import CheckpointError
from reid.inference import FeatureExtractor


def tool(name: str, monkeypatch, *args: str) -> int:
    """Run ``tools/<name>.py`` main() with ``args``; returns its exit code."""
    module = runpy.run_path(str(ROOT / "tools" / f"{name}.py"), run_name="tool")
    monkeypatch.setattr(sys, "argv", [name, *args])
    return module["main"]()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inference_tools")
    overrides = tiny_overrides(folder)
    return folder, overrides, save_tiny_checkpoint(folder / "run" / "checkpoints" / "best.pth", None, overrides)


def data_paths(folder) -> list[str]:
    """Where the data set and its cache are: given on the command line, never taken from a checkpoint."""
    return [f"dataset.root={folder / 'data'}", f"data.cache_dir={folder / 'cache'}"]


def test_test_tool_needs_only_the_checkpoint(tiny, monkeypatch, tmp_path):
    folder, overrides, ck = tiny
    assert tool("test", monkeypatch, "--checkpoint", str(ck), *data_paths(folder)) == 0
    saved = json.loads((folder / "run" / "test_metrics.json").read_text())
    assert saved["config"] == "stored in the checkpoint" and 0 <= saved["metrics"]["mAP"] <= 1
    # another data set with another number of training identities (cross-domain): one command
    other = f"dataset={{name: synthetic, root: {tmp_path / 'other'}, num_ids: 7, num_test_ids: 2, images_per_id: 4, "
    other += "height: 48, width: 24, masks: false}"
    assert tool("test", monkeypatch, "--checkpoint", str(ck), other, f"data.cache_dir={folder / 'cache'}",
                "--output-dir", str(tmp_path / "x")) == 0
    assert (tmp_path / "x" / "test_metrics.json").is_file()
    old = save_tiny_checkpoint(tmp_path / "old.pth", None, overrides, stored_config=False)
    with pytest.raises(CheckpointError, match="holds no config"):
        tool("test", monkeypatch, "--checkpoint", str(old), "--output-dir", str(tmp_path / "y"))


def test_extract_a_folder_and_a_split(tiny, monkeypatch, tmp_path, capsys):
    folder, _, ck = tiny
    rng = np.random.default_rng(0)
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    for name, shape in [("a.jpg", (90, 40, 3)), ("sub/b.png", (30, 20, 3)), ("sub/c.webp", (64, 32, 3)),
                        ("sub/d.BMP", (50, 50))]:
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(tmp_path / "imgs" / name)
    (tmp_path / "imgs" / "sub" / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "imgs" / "notes.txt").write_text("not an image file name")
    out = tmp_path / "f.npz"
    assert tool("extract", monkeypatch, "--checkpoint", str(ck), "--images", str(tmp_path / "imgs"),
                "--out", str(out)) == 0
    err = capsys.readouterr().err
    assert "unreadable, skipped: " + str(tmp_path / "imgs" / "sub" / "broken.jpg") in err
    assert "skipped 1 of 5 images" in err
    data = np.load(out)
    names = [p.split("imgs/")[1] for p in data["paths"]]
    assert names == ["a.jpg", "sub/b.png", "sub/c.webp", "sub/d.BMP"] and "pids" not in data
    expected = FeatureExtractor(ck)([str(p) for p in data["paths"]])
    assert np.abs(data["features"] - expected.numpy()).max() <= 1e-5
    assert tool("extract", monkeypatch, "--checkpoint", str(ck), "--split", "query", "--out", str(out),
                *data_paths(folder)) == 0
    data = np.load(out)
    assert len(data["features"]) == len(data["pids"]) == len(data["camids"]) == len(data["paths"]) > 0


def test_search_a_features_file(tiny, monkeypatch, tmp_path, capsys):
    folder, _, ck = tiny
    gallery = tmp_path / "gallery.npz"
    assert tool("extract", monkeypatch, "--checkpoint", str(ck), "--split", "gallery", "--out", str(gallery),
                *data_paths(folder)) == 0
    data = np.load(gallery)
    queries = [str(p) for p in data["paths"][[3, 0]]]
    out = tmp_path / "search"
    assert tool("search", monkeypatch, "--checkpoint", str(ck), "--query", *queries, "--gallery", str(gallery),
                "--topk", "4", "--out", str(out), "--chunk-size", "3") == 0
    rows = list(csv.DictReader((out / "search.csv").open()))
    assert len(rows) == 8 and list(rows[0]) == ["query", "rank", "gallery", "distance", "pid", "camid"]
    for q in queries:  # a gallery image as query finds itself first, at distance 0
        mine = [r for r in rows if r["query"] == q]
        assert [int(r["rank"]) for r in mine] == [1, 2, 3, 4] and mine[0]["gallery"] == q
        assert float(mine[0]["distance"]) < 1e-5
        assert [float(r["distance"]) for r in mine] == sorted(float(r["distance"]) for r in mine)
    with Image.open(out / "search.png") as fig:
        assert fig.width > 5 * SIZE[1] and fig.height > 2 * SIZE[0]
    assert "query " + queries[0] in capsys.readouterr().out


def test_export_tool_torchscript(tiny, monkeypatch, tmp_path, capsys):
    _, _, ck = tiny
    out = tmp_path / "m.pt"
    assert tool("export", monkeypatch, "--checkpoint", str(ck), "--format", "torchscript", "--out", str(out)) == 0
    assert "max |exported - PyTorch| = 0.00e+00" in capsys.readouterr().out
    images = torch.randn(3, 3, *SIZE)
    extractor = FeatureExtractor(ck)
    with torch.no_grad():
        assert float((torch.jit.load(str(out))(images) - extractor(images)).abs().max()) <= 1e-5
