"""Real-count replicas: every parser and tools/dataset_stats.py reproduce the datasets.md tables."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import reid.data.datasets  # noqa: F401
from reid.registry import DATASETS
from reid.testing.replicas import REAL_COUNTS, write_replica

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "dataset_stats.py"

# parser name -> replica generator; each replica is written once (placeholders: names only).
REPLICA_OF = {
    "dukemtmcreid": "dukemtmcreid",
    "cuhk03_labeled": "cuhk03_np",
    "cuhk03_detected": "cuhk03_np",
    "msmt17": "msmt17",
    "hands11k_dorsal_right": "hands11k",
    "hands11k_dorsal_left": "hands11k",
    "hands11k_palmar_right": "hands11k",
    "hands11k_palmar_left": "hands11k",
    "hd": "hd",
}


def load_tool():
    spec = importlib.util.spec_from_file_location("dataset_stats", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(monkeypatch, capsys, *args: str) -> str:
    monkeypatch.setattr(sys, "argv", ["dataset_stats.py", *args])
    assert load_tool().main() == 0
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def real_roots(tmp_path_factory):
    """~200,000 placeholder files; in RAM (/dev/shm) where available, creating them on disk is slow."""
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(prefix="reid-counts-", dir=shm)) if os.access(shm, os.W_OK) else None
    parent = base or tmp_path_factory.mktemp("counts")
    try:
        gens = sorted(set(REPLICA_OF.values()))
        yield {gen: write_replica(gen, parent / gen, seed=3, images="empty") for gen in gens}
    finally:
        if base is not None:
            shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("name", sorted(REPLICA_OF))
def test_real_counts(name, real_roots, monkeypatch, capsys):
    out = run_tool(monkeypatch, capsys, "--dataset", name, "--root", str(real_roots[REPLICA_OF[name]]), "--json")
    stats = json.loads(out)
    expected = {split: dict(zip(("ids", "images", "cameras"), v)) for split, v in REAL_COUNTS[name].items()}
    assert stats == expected


def test_msmt17_v2_layout_and_separate_val(tmp_path):
    write_replica("msmt17_v2", tmp_path, seed=0, scale=0.02, images="empty")
    ds = DATASETS.build("msmt17", root=str(tmp_path), version="v2", combine_val=False)
    assert "mask_train_v2" in ds.train[0].path and ds.val
    assert {s.pid for s in ds.val} <= {s.pid for s in ds.train}
    merged = DATASETS.build("msmt17", root=str(tmp_path))
    assert merged.stats() == ds.stats() and not merged.val
    assert len(merged.train) == len(ds.train) + len(ds.val)


def test_table_on_market_mini(market_mini, monkeypatch, capsys):
    out = run_tool(monkeypatch, capsys, "--dataset", "market1501", "--root", str(market_mini))
    assert "market1501" in out and "6540" in out and "1650" in out and "4746" in out
    stats = json.loads(run_tool(monkeypatch, capsys, "-d", "market1501", "-r", str(market_mini), "--json"))
    # the mini README's table says 375 gallery ids; 4 test ids have all their images in the query
    assert stats == {
        "train": {"ids": 376, "images": 6540, "cameras": 6},
        "query": {"ids": 375, "images": 1650, "cameras": 6},
        "gallery": {"ids": 371, "images": 4746, "cameras": 6},
    }


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "hd", "--root", "/nonexistent/data"], "data root not found"),
        (["--dataset", "dukemtmc", "--root", "."], "did you mean 'dukemtmcreid'"),
        (["--dataset", "msmt17", "--root", ".", "vers=v2"], "did you mean 'version'"),
        (["--dataset", "msmt17", "--root", "."], "no image folder found"),
    ],
)
def test_user_errors_exit_2(args, message, monkeypatch, capsys):
    from reid.cli import run

    monkeypatch.setattr(sys, "argv", ["dataset_stats.py", *args])
    with pytest.raises(SystemExit) as exc:
        run(load_tool().main)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_error_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, str(TOOL), "--dataset", "hd", "--root", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: HD") and "Traceback" not in proc.stderr


def test_write_replica_option(tmp_path, monkeypatch, capsys):
    args = ["-d", "hd", "-r", str(tmp_path), "--write-replica", "--scale", "0.05", "--images", "flat", "--json"]
    stats = json.loads(run_tool(monkeypatch, capsys, *args))
    assert stats["train"]["ids"] == 13 and stats["gallery"]["ids"] == 13 + 11
