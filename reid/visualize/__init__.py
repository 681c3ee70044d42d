"""Figures people would rather look at than read: ranked lists, attention maps, CMC and training
curves (``tools/visualize.py``). Maps are computed in :mod:`.attention` (tensors, no matplotlib);
drawing is in :mod:`.figures` (needs the optional extra ``reid[plot]``)."""
from .ranked_list import ranked_list_grid, save_ranked_lists  # noqa: F401
