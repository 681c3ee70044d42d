"""Feature extraction and per-query output."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reid.data import Sample
from reid.engine.evaluator import per_query_table
from reid.evaluation import evaluate_rank, extract_features


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


def test_per_query_table():
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.4, 0.3, 0.2, 0.1]], np.float32)
    r = evaluate_rank(dist, [1, 9], [1, 2, 1, 3, 1], [1, 1], [1, 2, 2, 2, 3], max_rank=5)
    text = per_query_table([Sample("a.jpg", 1, 1), Sample("b.jpg", 9, 1)], r)
    header, *rows = [line.split(",") for line in text.splitlines()]
    assert header == ["path", "pid", "camid", "ap", "first_match_rank"]
    assert [row[0] for row in rows] == ["a.jpg", "b.jpg"]
    assert [int(row[4]) for row in rows] == [2, -1]
    assert float(rows[0][3]) == pytest.approx(0.5, abs=1e-6) and rows[1][3] == ""
    assert [int(row[1]) for row in rows] == [1, 9]
