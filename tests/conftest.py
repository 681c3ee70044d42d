"""Shared fixtures: paths to the real benchmark data in ../shared/data, and small settings."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("REID_SHARED_DATA", ROOT.parent / "shared" / "data"))
#: Where the tests marked ``cuda_capable`` compute: ``REID_TEST_DEVICE=cuda`` runs them on the GPU
#: (scripts/gpu_check.sh does); default cpu, so the suite is unchanged without it.
TEST_DEVICE = os.environ.get("REID_TEST_DEVICE", "cpu")

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data; the test is skipped with a reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real benchmark data not found at {path} (set REID_SHARED_DATA)")
    return path


@pytest.fixture
def device() -> torch.device:
    """The device of a ``cuda_capable`` test: ``$REID_TEST_DEVICE`` (cpu unless set)."""
    if TEST_DEVICE.startswith("cuda") and not torch.cuda.is_available():
        pytest.fail(f"REID_TEST_DEVICE={TEST_DEVICE} but CUDA is not available")
    return torch.device(TEST_DEVICE)


@pytest.fixture
def market_mini() -> Path:
    """Root holding Market-1501-v15.09.15/ of the real mini split (376/375/375 identities)."""
    return shared_path("market1501-mini")


@pytest.fixture
def market_protocol() -> Path:
    return shared_path("market1501-protocol", "market1501_test_labels.npz")


@pytest.fixture
def cuhk03_protocol() -> Path:
    return shared_path("cuhk03-protocol")
