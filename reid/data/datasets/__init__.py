"""Data set parsers; importing this package registers them in ``reid.registry.DATASETS``.

Every module of this package is imported, so a new parser only needs its file here.
"""
import importlib
import pkgutil

from .base import DatasetError, ReidDataset, Sample  # noqa: F401

for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _mod != "base" and not _mod.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod}")
