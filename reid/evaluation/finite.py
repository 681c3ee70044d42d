"""NaN and infinity in features and distances: an error naming where they are, never a figure.

A NaN distance is never "closer" than another, so a ranking of non-finite numbers puts true matches
wherever the comparisons happen to fall (all-NaN features used to score rank-1 100%); the metrics
are computed only from finite numbers.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from reid.registry import UserError


class NonFiniteError(UserError, FloatingPointError):
    """Numbers that must be finite (features, distances, a training loss or weights) are NaN or
    infinite; nothing was computed from them."""


#: Why features or distances are not finite, per stage (the hint of the error message).
CAUSES = {
    "features": "the model's outputs are not finite: its weights are NaN or infinite (a diverged run) "
                "or the input is too small for the network",
    "distances": "features too large for the metric (their distances overflow), or not finite themselves",
    "re-ranked distances": "re-ranking produced them from finite distances (all distances equal: the "
                           "features have collapsed to one point)",
}


def check_finite(x: torch.Tensor, what: str, stage: str, rows: str = "rows",
                 name_of: Callable[[int], str] | None = None, offset: int = 0, total: int | None = None) -> None:
    """Raise :class:`NonFiniteError` when ``x`` [N, ...] holds NaN or inf (one ``isfinite`` pass).

    The message names ``what`` (e.g. ``"data set 'x': distances"``), how many of the N ``rows``
    hold such values, the first one (with ``name_of(row)``: its name) and the usual cause of
    ``stage`` (a key of :data:`CAUSES`). ``x`` may be rows ``offset``.. of ``total`` (a chunk)::

        data set 'x': distances: 3 of 30 query rows hold NaN or infinite values (the first: query
        row 4); the features are finite but ...
    """
    x = torch.as_tensor(x)
    # a finite sum means every entry is finite (NaN and inf propagate); a huge finite matrix whose
    # sum overflows falls through to the exact test. One read, no temporary: ~6 ms for 3368 x 15913
    if not x.is_floating_point() or bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all()):
        return
    bad = ~torch.isfinite(x.reshape(len(x), -1)).all(1)
    first = int(torch.nonzero(bad)[0, 0])
    name = f", {name_of(first)}" if name_of is not None else ""
    chunk = f" (rows {offset}-{offset + len(x) - 1} of {total})" if total is not None else ""
    raise NonFiniteError(
        f"{what}: {int(bad.sum())} of {len(x)} {rows}{chunk} hold NaN or infinite values "
        f"(the first: row {first + offset}{name}); {CAUSES[stage]}"
    )
