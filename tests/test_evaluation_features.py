"""Feature extraction and per-query output."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reid.evaluation import evaluate_rank, extract_features, load_per_query, save_per_query


class Tiny(torch.nn.Module):
    """Features: per-channel column profile, so a horizontal flip changes them."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.linspace(-1, 1, 4))

    def forward(self, x):
        assert not self.training
        return {"features": (x.mean(dim=(1, 2)) * self.w).repeat(1, 2) + x.mean(dim=(1, 2, 3))[:, None]}


def preprocess(batch):
    return batch.permute(0, 3, 1, 2).float() / 255


def test_extract_features_flip_normalise_and_batches():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 6, 4, 3), dtype=np.uint8)
    model = Tiny().train()
    f = extract_features(model, images, preprocess, batch_size=3, normalize=False, progress=False)
    assert model.training  # mode restored
    assert f.shape == (10, 8) and f.dtype == torch.float32 and f.device.type == "cpu"
    x = preprocess(torch.from_numpy(images))
    model.eval()
    torch.testing.assert_close(f, model(x)["features"])
    flip = extract_features(model, torch.from_numpy(images), preprocess, batch_size=4, flip=True,
                            normalize=False, progress=False)
    torch.testing.assert_close(flip, (model(x)["features"] + model(x.flip(3))["features"]) / 2)
    norm = extract_features(model, images, preprocess, batch_size=10, flip=True, progress=False)
    torch.testing.assert_close(norm, torch.nn.functional.normalize(flip, dim=1))


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_save_per_query_round_trip(tmp_path, suffix):
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.4, 0.3, 0.2, 0.1]], np.float32)
    r = evaluate_rank(dist, [1, 9], [1, 2, 1, 3, 1], [1, 1], [1, 2, 2, 2, 3], max_rank=5)
    path = save_per_query(tmp_path / f"per_query{suffix}", r, [1, 9], [1, 1], ["a.jpg", "b.jpg"])
    rec = load_per_query(path)
    assert rec["path"].tolist() == ["a.jpg", "b.jpg"]
    assert rec["first_match_rank"].tolist() == [2, -1]
    assert rec["valid"].tolist() == [True, False]
    assert rec["ap"][0] == pytest.approx(0.5, abs=1e-6) and np.isnan(rec["ap"][1])
    assert rec["pid"].tolist() == [1, 9]
