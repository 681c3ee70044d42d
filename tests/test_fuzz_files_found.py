"""Cases the seeded file fuzzer (``scripts/fuzz_files.py``) found in data folders and checkpoints,
pinned here so that each stays one clear error: names with non-ASCII digits or impossible cameras,
layout errors on one line, checkpoints that are folders, lack weights or carry a broken config, and
checkpoints whose weights are NaN (features refused, never returned)."""
from __future__ import annotations

import pytest
import torch
from inference_tools import save_tiny_checkpoint, tiny_overrides
from test_data_market import fake_market, touch

from reid.data import DatasetError
from reid.data.datasets.market import market1501
from reid.engine.checkpoint import CheckpointError, load_checkpoint
from reid.evaluation.finite import NonFiniteError
from reid.inference import FeatureExtractor, load_model


@pytest.mark.parametrize("name, match", [
    ("\u0660\u0660\u0660\u0662_c1s1_000451_03.jpg", "unexpected file name"),  # Arabic-Indic digits
    ("0002_c0s1_000451_03.jpg", "camera 0 out of range; expected cameras numbered 1..6"),
    ("0002_c7s1_000451_03.jpg", "camera 7 out of range"),
    ("123456789012_c1s1_000451_03.jpg", "unexpected file name"),  # an identity of 12 digits
])
def test_market_names_that_lie_are_errors(tmp_path, name, match):
    base = fake_market(tmp_path)
    touch(base / "bounding_box_train", name)
    with pytest.raises(DatasetError, match=match):
        market1501(str(tmp_path))


def test_layout_errors_are_one_line(tmp_path):
    base = fake_market(tmp_path)
    for f in (base / "query").iterdir():
        f.unlink()
    with pytest.raises(DatasetError) as empty:
        market1501(str(tmp_path))
    (base / "query").rmdir()
    with pytest.raises(DatasetError) as missing:
        market1501(str(tmp_path))
    for err in (empty, missing):
        assert "\n" not in str(err.value) and "query" in str(err.value)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz_found")
    return folder, save_tiny_checkpoint(folder / "ck.pth", None, tiny_overrides(folder))


def test_checkpoints_that_lie_name_the_cause(tiny, tmp_path):
    _, ck = tiny
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint file"):
        load_checkpoint(tmp_path)
    state = torch.load(ck, weights_only=True)
    no_model = tmp_path / "no_model.pth"
    torch.save({k: v for k, v in state.items() if k != "model"}, no_model)
    with pytest.raises(CheckpointError, match="holds no model weights"):
        load_model(no_model)
    bad_config = tmp_path / "bad_config.pth"
    torch.save({**state, "config": ["not", "a", "mapping"]}, bad_config)
    with pytest.raises(CheckpointError, match="stored config is a list, not a mapping"):
        load_model(bad_config)


def test_nan_weights_give_an_error_not_features(tiny, tmp_path):
    _, ck = tiny
    state = torch.load(ck, weights_only=True)
    state["model"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                      for k, v in state["model"].items()}
    nan = tmp_path / "nan.pth"
    torch.save(state, nan)
    image = torch.zeros(64, 32, 3, dtype=torch.uint8).numpy()
    with pytest.raises(NonFiniteError, match="nan.pth: features: 2 of 2 images hold NaN"):
        FeatureExtractor(nan)([image, image])
