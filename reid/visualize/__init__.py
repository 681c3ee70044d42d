"""Figures people would rather look at than read: ranked lists (attention maps to come)."""
from .ranked_list import ranked_list_grid, save_ranked_lists  # noqa: F401
