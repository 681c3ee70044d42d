"""The worked examples of docs/extending_data.md, run exactly as printed (so the doc cannot rot)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import reid.data  # noqa: F401  (registers the shipped parsers first)
from reid.config import load_config
from reid.data import build_dataset
from reid.data.protocols import PROTOCOLS
from reid.evaluation import evaluate_rank
from reid.registry import DATASETS, ConfigError

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending_data.md"


def doc_block(section: str) -> str:
    """The first ```python block under the ``## <section>`` heading of the doc."""
    text = DOC.read_text()
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    blocks = re.findall(r"```python\n(.*?)```", text[start:end if end > 0 else None], flags=re.S)
    assert blocks, f"no python block under '## {section}'"
    return blocks[0]


@pytest.fixture
def scratch_registries():
    """Undo the doc's registrations afterwards (the registries are process-wide)."""
    saved = {reg: dict(reg._items) for reg in (DATASETS, PROTOCOLS)}
    yield
    for reg, items in saved.items():
        reg._items.clear()
        reg._items.update(items)


def write_images(base: Path, split: str, names: list[str]) -> None:
    (base / split).mkdir(parents=True)
    for i, name in enumerate(names):
        Image.fromarray(np.full((8, 4, 3), 10 * i, np.uint8)).save(base / split / name)


def test_add_a_data_set_example(tmp_path, scratch_registries):
    exec(compile(doc_block("Add a data set"), "mycams.py", "exec"), {"__name__": "mycams"})
    base = tmp_path / "mycams"
    write_images(base, "train", ["0003_c1_0001.jpg", "0003_c2_0002.jpg", "0009_c1_0001.jpg", "0009_c3_0004.jpg"])
    write_images(base, "query", ["0011_c1_0001.jpg", "0012_c2_0001.jpg"])
    write_images(base, "gallery", ["0011_c2_0003.jpg", "0012_c1_0002.jpg", "0013_c3_0001.jpg"])
    (base / "gallery" / "Thumbs.db").write_text("not an image")  # ignored

    cfg = load_config(None, ["dataset.name=mycams", f"dataset.root={tmp_path}"])
    ds = build_dataset(cfg, verbose=False)
    assert ds.name == "mycams" and ds.protocol == "market" and ds.evaluation_protocol.cross_camera
    assert [(Path(s.path).name, s.pid, s.camid) for s in ds.train] == [
        ("0003_c1_0001.jpg", 0, 0), ("0003_c2_0002.jpg", 0, 1), ("0009_c1_0001.jpg", 1, 0), ("0009_c3_0004.jpg", 1, 2)]
    assert [(s.pid, s.camid) for s in ds.query] == [(11, 0), (12, 1)]
    assert [(s.pid, s.camid) for s in ds.gallery] == [(11, 1), (12, 0), (13, 2)]
    assert ds.stats()["train"] == {"ids": 2, "images": 4, "cameras": 3}

    with pytest.raises(ConfigError, match=r"rot'.*did you mean '(dataset\.)?root'"):
        load_config(None, ["dataset.name=mycams", f"dataset.rot={tmp_path}"])
    (base / "query" / "bad-name.jpg").write_bytes(b"")
    with pytest.raises(reid.data.DatasetError, match=r"bad-name.jpg: unexpected file name; expected <pid>_c<cam>"):
        build_dataset(cfg, verbose=False)


def test_add_an_evaluation_protocol_example(scratch_registries):
    exec(compile(doc_block("Add an evaluation protocol"), "protocol.py", "exec"), {"__name__": "protocol"})
    # query 0 (pid 1, camera 0): its only true match is gallery 1, taken by the same camera
    dist = np.array([[0.3, 0.1, 0.2], [0.1, 0.5, 0.4]])
    q_pids, g_pids, q_cams, g_cams = [1, 2], [2, 1, 2], [0, 0], [1, 0, 1]
    market = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=3)
    kept = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=3, protocol="same_camera_kept")
    assert market.valid.tolist() == [False, True] and market.first_match_rank.tolist() == [-1, 1]
    assert kept.protocol == "same_camera_kept"
    assert kept.valid.tolist() == [True, True] and kept.first_match_rank.tolist() == [1, 1]
    assert kept.cmc.tolist() == [1.0, 1.0, 1.0]
    ds = reid.data.ReidDataset("toy", [], [], [], protocol="same_camera_kept")
    assert ds.evaluation_protocol.validation == "market"
