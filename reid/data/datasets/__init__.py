"""Data set parsers; importing this package registers them in ``reid.registry.DATASETS``.

Every module of this package is imported, so a new parser only needs its file here. A parser
module may declare ``PUBLISHED = {name: {split: (ids, images, cameras)}}``, the split sizes of the
real data set; they are collected in :data:`PUBLISHED` (a model can then be sized, and a run
timed, without the data on disk).
"""
from reid.registry import import_submodules

from .base import DatasetError, ReidDataset, Sample  # noqa: F401

#: Published split sizes per data set name: ``{split: (ids, images, cameras)}``, from the parsers.
PUBLISHED: dict[str, dict[str, tuple[int, int, int]]] = {}

for _module in import_submodules(__name__, __path__, skip=("base",)):
    PUBLISHED.update(getattr(_module, "PUBLISHED", {}))
