"""Builders: data set from config, the P x K training loader, test images and inputs."""
from __future__ import annotations

import copy
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from reid.config import DEFAULTS, Config
from reid.data import (
    DatasetError,
    TrainLoader,
    build_dataset,
    build_test_images,
    build_train_loader,
    to_input,
)


def make_cfg(tmp_path, **dataset):
    d = copy.deepcopy(DEFAULTS)
    d["dataset"] = {"name": "synthetic", "root": str(tmp_path / "data"), "num_ids": 6, "num_test_ids": 3,
                    "images_per_id": 6, "height": 64, "width": 32, **dataset}
    d["input"]["size"] = [48, 24]
    d["data"]["cache_dir"] = str(tmp_path / "cache")
    d["data"]["workers"] = 2
    d["sampler"].update(num_ids=3, num_instances=2)
    d["augment"]["erasing"]["prob"] = 0.5
    return Config.wrap(d)


@pytest.fixture
def setup(tmp_path):
    cfg = make_cfg(tmp_path)
    return cfg, build_dataset(cfg, verbose=False)


@pytest.mark.cuda_capable
def test_loader_yields_pk_batches_on_device(setup, device):
    cfg, ds = setup
    loader = build_train_loader(cfg, ds, device)
    assert isinstance(loader, TrainLoader) and len(loader) == 6  # 6 ids x 3 chunks / 3 per batch
    batches = list(loader)
    assert len(batches) == len(loader)
    for b in batches:
        assert set(b) == {"images", "pids", "camids", "masks", "mask_valid"}
        assert b["mask_valid"].dtype == torch.bool and bool(b["mask_valid"].all())  # every sample has one
        assert b["images"].shape == (6, 3, 48, 24) and b["images"].dtype == torch.float32
        assert all(t.device.type == device.type for t in b.values())
        assert b["pids"].dtype == torch.int64 and b["camids"].dtype == torch.int64
        assert b["masks"].shape == (6, 48, 24) and b["masks"].dtype == torch.uint8
        assert torch.unique(b["pids"]).numel() == 3
    train = {(s.pid, s.camid) for s in ds.train}
    assert all((int(p), int(c)) in train for b in batches for p, c in zip(b["pids"], b["camids"]))


@pytest.mark.cuda_capable
def test_loader_epoch_is_reproducible(setup, device):
    cfg, ds = setup
    a, b = build_train_loader(cfg, ds, device), build_train_loader(cfg, ds, device)
    a.set_epoch(3)
    b.set_epoch(3)
    first = [x["images"] for x in a]
    assert all(torch.equal(x, y["images"]) for x, y in zip(first, b))
    a.set_epoch(4)
    assert not all(torch.equal(x, y["images"]) for x, y in zip(first, a))
    a.set_epoch(3)  # going back gives epoch 3 again (exact resume)
    assert all(torch.equal(x, y["images"]) for x, y in zip(first, a))


def test_memory_mapped_and_distributed_loaders(setup):
    cfg, ds = setup
    cfg.data.on_device = False
    loaders = [build_train_loader(cfg, ds, "cpu", rank=r, world_size=2) for r in range(2)]
    assert not loaders[0].on_device and isinstance(loaders[0].images, np.ndarray)
    for b0, b1 in zip(*loaders):
        assert not set(b0["pids"].tolist()) & set(b1["pids"].tolist())


@pytest.mark.cuda_capable
def test_resident_and_memory_mapped_stores_give_the_same_batches(setup, device):
    """The resident store gathers batch and crop in one pass; the memory-mapped one gathers the
    batch first: the same seed gives the same images and masks either way."""
    cfg, ds = setup
    resident = build_train_loader(cfg, ds, device)
    cfg.data.on_device = False
    mapped = build_train_loader(cfg, ds, device)
    assert resident.on_device and not mapped.on_device
    assert tuple(resident.images.shape[1:3]) == (54, 27)  # stored at 9/8 of 48x24: crops are windows
    for x, y in zip(resident, mapped):
        assert torch.equal(x["images"], y["images"]) and torch.equal(x["masks"], y["masks"])


def test_host_memory_setting_applies_once_and_can_be_declined():
    code = ("from reid.engine.host_memory import keep_freed_host_memory as k; "
            "print(k(), k())")
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert on.stdout.split() == (["True", "True"] if sys.platform.startswith("linux") else ["False", "False"])
    env = {**os.environ, "REID_HOST_MALLOC": "default"}
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert off.stdout.split() == ["False", "False"]


def test_test_images_and_inputs(setup):
    cfg, ds = setup
    images = build_test_images(cfg, ds.query + ds.gallery)
    assert images.shape == (len(ds.query) + len(ds.gallery), 48, 24, 3) and images.dtype == np.uint8
    x = to_input(images[:4], cfg)
    assert x.shape == (4, 3, 48, 24) and x.dtype == torch.float32
    mean = torch.tensor(cfg.input.pixel_mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.input.pixel_std).view(1, 3, 1, 1)
    back = (x * std + mean) * 255
    assert torch.allclose(back, torch.from_numpy(np.array(images[:4])).permute(0, 3, 1, 2).float(), atol=1e-3)


def test_build_dataset_prints_summary_and_checks_keys(tmp_path, capsys):
    cfg = make_cfg(tmp_path)
    ds = build_dataset(cfg)
    assert "synthetic" in capsys.readouterr().out and ds.num_train_ids == 6
    from reid.registry import ConfigError
    cfg.dataset["num_idz"] = 3
    with pytest.raises(ConfigError, match="num_ids"):
        build_dataset(cfg)


# ------------------------------------------------------------------------------ missing masks

MASK_LOSS = {"mask": {"name": "mask_guidance", "weight": 1.0, "require_masks": True}}


def drop_masks(ds, every: int = 3) -> set[str]:
    """Delete every ``every``-th training mask file of ``ds``; returns the image paths that lost theirs."""
    dropped = set()
    for s in ds.train[::every]:
        os.remove(s.mask)
        dropped.add(s.path)
    return dropped


def test_samples_without_masks_are_flagged_on_both_store_paths(setup):
    """Some mask files missing: every batch carries ``mask_valid``, false exactly for those samples,
    whose masks are all zero; the resident and the memory-mapped stores give the same batches."""
    cfg, ds = setup
    dropped = drop_masks(ds)
    ds = build_dataset(cfg, verbose=False)
    assert ds.has_masks and sum(s.mask is None for s in ds.train) == len(dropped) > 0
    cfg.losses = Config.wrap(MASK_LOSS)
    resident = build_train_loader(cfg, ds, "cpu")
    cfg.data.on_device = False
    mapped = build_train_loader(cfg, ds, "cpu")
    assert resident.on_device and not mapped.on_device
    order = list(resident.sampler)  # the sample indices of each batch of this epoch
    flags = []
    for idx, x, y in zip(order, resident, mapped):
        for key in ("images", "masks", "mask_valid"):
            assert torch.equal(x[key], y[key]), key
        want = torch.tensor([ds.train[i].path not in dropped for i in idx])
        assert torch.equal(x["mask_valid"], want)
        assert int(x["masks"][~want].sum()) == 0 and bool((x["masks"][want].flatten(1).amax(1) > 0).all())
        flags.append(want)
    assert not bool(torch.cat(flags).all())


@pytest.mark.parametrize("crop", ["upscale", "pad"])
def test_masks_stay_aligned_with_their_images(crop):
    """Each valid sample's mask is its image's red channel: after crops and flips (no colour jitter,
    no erasing) the de-normalised red channel still equals the mask pixel for pixel, on the resident
    and the memory-mapped path; a sample without a mask keeps an all-zero mask and a false flag."""
    from reid.data.sampler import PKSampler
    from reid.data.transforms import BatchAugment

    rng = np.random.default_rng(0)
    n, size = 12, (16, 8)
    augment = BatchAugment([0.5] * 3, [0.25] * 3, size=size, crop=crop, pad=3, flip_prob=0.5)
    images = rng.integers(1, 256, (n, *augment.stored_size(), 3), dtype=np.uint8)
    valid = np.arange(n) % 3 != 0
    masks = np.where(valid[:, None, None], images[..., 0], 0).astype(np.uint8)
    pids = np.arange(n) // 3
    batches = []
    for on_device in (True, False):
        loader = TrainLoader(images, pids, pids, PKSampler(pids, 2, 3), augment, "cpu", masks=masks,
                             on_device=on_device, mask_valid=valid)
        assert loader.on_device is on_device
        batches.append(list(zip(loader.sampler, loader)))
    for (idx, x), (_, y) in zip(*batches):
        assert all(torch.equal(x[k], y[k]) for k in ("images", "masks", "mask_valid"))
        assert torch.equal(x["mask_valid"], torch.from_numpy(valid[idx]))
        red = (x["images"][:, 0] * 0.25 + 0.5) * 255
        v = x["mask_valid"]
        assert torch.allclose(red[v], x["masks"][v].float(), atol=1e-3)
        assert int(x["masks"][~v].sum()) == 0


def test_training_set_without_any_mask(tmp_path):
    """No mask at all: a one-line DatasetError naming the data set and where masks were expected,
    before any image store is built, when a loss requires masks; a loader without masks otherwise."""
    cfg = make_cfg(tmp_path, masks=False)
    ds = build_dataset(cfg, verbose=False)
    assert not ds.has_masks
    cfg.losses = Config.wrap(copy.deepcopy(MASK_LOSS))
    with pytest.raises(DatasetError) as err:
        build_train_loader(cfg, ds, "cpu")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("synthetic: no training image has a body-part mask")
    assert f"{ds.root}/masks/bounding_box_train/<image stem>.png" in msg
    assert "losses.mask.require_masks=false" in msg
    assert not (tmp_path / "cache" / "stores").exists()
    cfg.losses.mask.require_masks = False
    batch = next(iter(build_train_loader(cfg, ds, "cpu")))
    assert set(batch) == {"images", "pids", "camids"}
