"""Builders used by the engine: data set, training loader, test image store, test-time input."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from reid.registry import DATASETS

from .datasets.base import DatasetError, ReidDataset, Sample
from .datasets.market import MARKET_SPLITS
from .sampler import PKSampler
from .store import build_image_store, mask_valid
from .transforms import BatchAugment
from .transforms import to_input as _to_input

log = logging.getLogger("reid")

#: With ``data.on_device: auto``, the training store moves to the GPU if it takes at most this
#: fraction of the GPU's free memory.
ON_DEVICE_FRACTION = 0.25


def build_dataset(cfg: Any, verbose: bool = True) -> ReidDataset:
    """``DATASETS.build`` of ``cfg.dataset``; prints ``dataset.summary()`` when ``verbose``."""
    section = dict(cfg.dataset)
    name = section.pop("name")
    dataset = DATASETS.build(name, where="dataset", **section)
    if verbose:
        print(dataset.summary(), flush=True)
    return dataset


def train_identities(cfg: Any) -> tuple[int, str]:
    """(number of training identities of ``cfg.dataset``, where it came from): counted from the data
    set when it is on disk, else the real data set's published count (a model can be built, sized
    and timed without the data); a data set not found and not known is the parser's DatasetError."""
    from .datasets import PUBLISHED

    try:
        return build_dataset(cfg, verbose=False).num_train_ids, f"counted under {cfg.dataset.root}"
    except DatasetError as error:
        name = str(cfg.dataset.name)
        known = {k: v["train"][0] for k, v in PUBLISHED.items()}
        if name not in known:
            raise
        return known[name], f"the published {name} count; not read from disk: {str(error).splitlines()[0]}"


def _store_dir(cfg: Any) -> Path:
    return Path(cfg.data.cache_dir).expanduser() / "stores"


def _size(cfg: Any) -> tuple[int, int]:
    return int(cfg.input.size[0]), int(cfg.input.size[1])


def build_test_images(cfg: Any, samples: Sequence[Sample]) -> np.ndarray:
    """uint8 [N, H, W, 3] (memory-mapped store) of ``samples`` at ``cfg.input.size``."""
    return build_image_store([s.path for s in samples], _size(cfg), _store_dir(cfg),
                             workers=int(cfg.data.workers), interpolation=str(cfg.input.interpolation))


def to_input(images: Any, cfg: Any, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> normalised float32 [B, 3, H, W] (on ``device``) with cfg's mean/std."""
    return _to_input(images, cfg.input.pixel_mean, cfg.input.pixel_std, device)


def _wants_device(on_device: Any, device: torch.device, nbytes: int) -> bool:
    if on_device in (False, "false", "False"):
        return False
    if on_device in (True, "true", "True"):
        return True
    if device.type == "cpu":  # a tensor in RAM unless large: then the memory-mapped store
        return nbytes <= 2 * 1024**3
    try:
        free, _ = torch.cuda.mem_get_info(device) if device.type == "cuda" else (0, 0)
    except (RuntimeError, AssertionError):
        free = 0
    return nbytes <= ON_DEVICE_FRACTION * free


class TrainLoader:
    """Iterates P x K training batches: gather by index from the uint8 store, augment on device.

    Yields ``{"images": float32 [B, 3, H, W], "pids": int64 [B], "camids": int64 [B]}`` (+
    ``"masks"``: uint8 [B, H, W] and ``"mask_valid"``: bool [B] when ``masks`` is given; a sample
    whose ``mask_valid`` flag [N] is false has an all-zero mask), all on ``device``. ``len()`` is
    batches per epoch; ``set_epoch(e)`` makes the order and the augmentation a function of (seed, e).
    """

    def __init__(self, images: np.ndarray, pids: np.ndarray, camids: np.ndarray, sampler: PKSampler,
                 augment: BatchAugment, device: torch.device | str, masks: np.ndarray | None = None,
                 seed: int = 0, rank: int = 0, on_device: Any = "auto", mask_valid: np.ndarray | None = None):
        self.device = torch.device(device)
        self.sampler, self.augment = sampler, augment
        self.seed, self.rank = int(seed), int(rank)
        nbytes = images.nbytes + (masks.nbytes if masks is not None else 0)
        self.on_device = _wants_device(on_device, self.device, nbytes)
        if self.on_device:
            self.images = torch.from_numpy(np.array(images)).to(self.device)
            self.masks = torch.from_numpy(np.array(masks)).to(self.device) if masks is not None else None
        else:
            self.images, self.masks = images, masks  # memory-mapped; gathered per batch
        self.pids = torch.as_tensor(np.asarray(pids), dtype=torch.int64, device=self.device)
        self.camids = torch.as_tensor(np.asarray(camids), dtype=torch.int64, device=self.device)
        self.mask_valid = None
        if masks is not None:
            valid = np.ones(len(pids), dtype=bool) if mask_valid is None else np.asarray(mask_valid, dtype=bool)
            self.mask_valid = torch.as_tensor(valid, device=self.device)
        self.generator = torch.Generator()
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.sampler.set_epoch(epoch)
        self.generator.manual_seed((self.seed * 1_000_003 + self.epoch * 7919 + self.rank * 104_729) % 2**63)

    def __len__(self) -> int:
        return len(self.sampler)

    def _gather(self, store: np.ndarray, idx: np.ndarray) -> torch.Tensor:
        """The batch ``store[idx]`` of a memory-mapped store, on the device."""
        batch = torch.from_numpy(np.ascontiguousarray(store[idx]))
        if self.device.type == "cuda":
            batch = batch.pin_memory()
        return batch.to(self.device, non_blocking=True)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for idx in self.sampler:
            if self.on_device:  # one gather from the resident store, fused with the crop
                x, m = self.augment(self.images, self.generator, self.masks, index=idx)
            else:
                images = self._gather(self.images, idx)
                masks = self._gather(self.masks, idx) if self.masks is not None else None
                x, m = self.augment(images, self.generator, masks)
            t = torch.from_numpy(idx).to(self.device)
            batch = {"images": x, "pids": self.pids[t], "camids": self.camids[t]}
            if m is not None:
                batch["masks"], batch["mask_valid"] = m, self.mask_valid[t]
            yield batch


def masks_required(cfg: Any) -> list[str]:
    """Labels of the losses in ``cfg.losses`` that set ``require_masks: true`` (MMGA's mask loss)."""
    return [label for label, spec in cfg.losses.items() if (spec or {}).get("require_masks")]


def _expected_masks(dataset: ReidDataset) -> str:
    """Where ``dataset``'s parser looks for its training masks, in words."""
    first = Path(dataset.train[0].path) if dataset.train else None
    if dataset.root and first is not None and first.parent.name == MARKET_SPLITS[0] \
            and first.parent.parent == Path(dataset.root):  # a Market-format layout
        return f"label maps {Path(dataset.root) / 'masks' / MARKET_SPLITS[0]}/<image stem>.png"
    return (f"none: the {dataset.name} parser reads no masks; "
            "Market-format sets read <root>/masks/<split>/<image stem>.png")


def check_masks(cfg: Any, dataset: ReidDataset) -> None:
    """A DatasetError when a loss requires masks and no training sample of ``dataset`` has one."""
    needs = masks_required(cfg)
    if needs and not dataset.has_masks:
        raise DatasetError(
            f"{dataset.name}: no training image has a body-part mask (expected: {_expected_masks(dataset)}); "
            f"losses.{needs[0]}.require_masks is true: provide the masks or set "
            f"losses.{needs[0]}.require_masks=false to train without mask guidance")


def build_train_loader(cfg: Any, dataset: ReidDataset, device: torch.device | str, rank: int = 0,
                       world_size: int = 1) -> TrainLoader:
    """The training loader of ``dataset.train`` per ``cfg.input/augment/sampler/data``; the body-part
    masks of the samples that have one (:func:`check_masks` first: none at all can be an error)."""
    check_masks(cfg, dataset)
    train = dataset.train
    paths = [s.path for s in train]
    workers = int(cfg.data.workers)
    augment = BatchAugment.from_config(cfg)
    stored = augment.stored_size()  # e.g. 9/8 of input.size: crops are then integer gathers
    interpolation = str(cfg.input.interpolation)
    masks = valid = None
    if dataset.has_masks:  # samples without a mask: an all-zero mask, flagged not valid
        mask_paths = [s.mask for s in train]
        images, masks = build_image_store(paths, stored, _store_dir(cfg), workers=workers,
                                          interpolation=interpolation, masks=mask_paths)
        valid = mask_valid(mask_paths)
    else:
        images = build_image_store(paths, stored, _store_dir(cfg), workers=workers, interpolation=interpolation)
    pids = np.array([s.pid for s in train], dtype=np.int64)
    camids = np.array([s.camid for s in train], dtype=np.int64)
    sampler = PKSampler(pids, int(cfg.sampler.num_ids), int(cfg.sampler.num_instances),
                        seed=int(cfg.seed), rank=rank, world_size=world_size,
                        epoch=str(cfg.sampler.epoch), last_batch=str(cfg.sampler.last_batch),
                        exhausted=str(cfg.sampler.exhausted))
    if rank == 0:
        log_sampler_shortfall(pids, int(cfg.sampler.num_ids), int(cfg.sampler.num_instances))
    return TrainLoader(images, pids, camids, sampler, augment, device, masks=masks,
                       seed=int(cfg.seed), rank=rank, on_device=cfg.data.on_device,
                       mask_valid=valid)



def log_sampler_shortfall(pids: np.ndarray, num_ids: int, num_instances: int) -> int:
    """Log how many identities have fewer than K = ``num_instances`` training images (the sampler
    draws their K images with replacement, so a batch repeats some images) and whether a P x K batch
    is larger than the whole training set; returns the number of such identities."""
    counts = np.unique(np.asarray(pids), return_counts=True)[1]
    short = int((counts < num_instances).sum())
    if short:
        log.info(f"sampler: {short} of {len(counts)} identities have fewer than sampler.num_instances = "
                 f"{num_instances} images; their images are drawn with replacement")
    if num_ids * num_instances > len(pids):
        log.warning(f"sampler: a batch of sampler.num_ids x num_instances = {num_ids * num_instances} images is "
                    f"larger than the {len(pids)} training images; batches repeat images")
    return short
