"""'Did you mean' suggestions for mistyped names (the bottom layer: imports nothing of reid)."""
from __future__ import annotations

import difflib
from typing import Iterable


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``name`` (difflib ratio >= 0.5), or None."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return matches[0] if matches else None


def suggestion(name: str, candidates: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` or a list of the valid names."""
    candidates = sorted(candidates)
    best = closest(name, candidates)
    if best is not None:
        return f"; did you mean '{best}'?"
    return f"; valid: {', '.join(candidates)}" if candidates else ""
