"""Decoded image store: contents, reuse, invalidation, corrupt files, masks."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from reid.data import DatasetError, build_image_store


def write_images(folder, n=5, size=(40, 20)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths, arrays = [], []
    for i in range(n):
        a = rng.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)
        p = folder / f"{i}.png"
        Image.fromarray(a).save(p)
        paths.append(str(p))
        arrays.append(a)
    return paths, arrays


def test_store_contents_reuse_and_invalidation(tmp_path):
    paths, arrays = write_images(tmp_path / "img")
    store = build_image_store(paths, (20, 10), tmp_path / "cache", workers=2)
    assert store.shape == (5, 20, 10, 3) and store.dtype == np.uint8
    expected = np.asarray(Image.fromarray(arrays[3]).resize((10, 20), Image.BILINEAR))
    assert np.array_equal(store[3], expected)
    same = build_image_store(paths, (40, 20), tmp_path / "cache")
    assert np.array_equal(same[1], arrays[1])  # no resize at native size
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(files) == 2 and all(f.endswith(".npy") for f in files)
    mtime = os.stat(tmp_path / "cache" / files[0]).st_mtime_ns
    again = build_image_store(paths, (20, 10), tmp_path / "cache")
    assert np.array_equal(again, store) and isinstance(again, np.memmap)
    assert os.stat(tmp_path / "cache" / files[0]).st_mtime_ns == mtime  # reused, not rebuilt
    Image.fromarray(arrays[0][::-1]).save(paths[0])  # a changed file gives a new store
    os.utime(paths[0], ns=(1, 1))
    changed = build_image_store(paths, (40, 20), tmp_path / "cache")
    assert np.array_equal(changed[0], arrays[0][::-1])
    assert len(list((tmp_path / "cache").iterdir())) == 3


def test_corrupt_image_names_the_file(tmp_path):
    paths, _ = write_images(tmp_path / "img", n=3)
    with open(paths[1], "wb") as f:
        f.write(b"not an image")
    with pytest.raises(DatasetError, match="1.png"):
        build_image_store(paths, (20, 10), tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.npy"))  # nothing half-written kept
    assert not list((tmp_path / "cache").glob(".*tmp"))


def test_mask_store_keeps_labels(tmp_path):
    paths, _ = write_images(tmp_path / "img", n=2)
    labels = np.zeros((40, 20), dtype=np.uint8)
    labels[10:30, 5:15] = 5
    labels[30:, :] = 17
    mpaths = []
    for i in range(2):
        Image.fromarray(labels).save(tmp_path / f"m{i}.png")
        mpaths.append(str(tmp_path / f"m{i}.png"))
    images, masks = build_image_store(paths, (20, 10), tmp_path / "cache", masks=mpaths)
    assert images.shape == (2, 20, 10, 3) and masks.shape == (2, 20, 10) and masks.dtype == np.uint8
    assert set(np.unique(masks)) == {0, 5, 17}  # nearest: no blended label values
    assert np.array_equal(masks[0], labels[1::2, 1::2])  # PIL nearest samples pixel centres


def test_mask_store_with_samples_without_masks(tmp_path):
    """A None mask path stores an all-zero mask (flag false); which entries are None is part of
    the store's key, so dropping a mask file gives a new store."""
    from reid.data.store import mask_valid

    paths, _ = write_images(tmp_path / "img", n=3)
    labels = np.full((40, 20), 9, dtype=np.uint8)
    Image.fromarray(labels).save(tmp_path / "m.png")
    full = [str(tmp_path / "m.png")] * 3
    _, all_masks = build_image_store(paths, (20, 10), tmp_path / "cache", masks=full)
    some = [full[0], None, full[2]]
    images, masks = build_image_store(paths, (20, 10), tmp_path / "cache", masks=some)
    assert masks.shape == (3, 20, 10) and images.shape == (3, 20, 10, 3)
    assert (masks[[0, 2]] == 9).all() and (masks[1] == 0).all() and (all_masks == 9).all()
    assert mask_valid(some).tolist() == [True, False, True] and mask_valid(some).dtype == bool
    _, none = build_image_store(paths, (20, 10), tmp_path / "cache", masks=[None] * 3)
    assert (np.asarray(none) == 0).all()
