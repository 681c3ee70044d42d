"""Data: parsers (registered on import), image stores, P x K sampler, batched augmentation."""
from . import datasets  # noqa: F401  (fills reid.registry.DATASETS)
from .build import TrainLoader, build_dataset, build_test_images, build_train_loader, to_input, train_identities
from .datasets.base import DatasetError, ReidDataset, Sample
from .sampler import PKSampler
from .store import build_image_store
from .transforms import BatchAugment

__all__ = [
    "BatchAugment", "DatasetError", "PKSampler", "ReidDataset", "Sample", "TrainLoader",
    "build_dataset", "build_image_store", "build_test_images", "build_train_loader", "to_input",
    "train_identities",
]
