"""Data set records shared by every parser: a sample, and a data set's splits."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from reid.data.protocols import Protocol, get_protocol
from reid.registry import UserError


class DatasetError(UserError, ValueError):
    """A user error in data on disk: wrong root, missing folder or list file, bad names."""


@dataclass(frozen=True)
class Sample:
    """One image: its file, identity, camera and (optionally) its body-part mask file."""

    path: str
    pid: int
    camid: int
    mask: str | None = None


def split_stats(samples: Sequence[Sample]) -> dict[str, int]:
    """``{"ids": .., "images": .., "cameras": ..}`` of one split."""
    return {
        "ids": len({s.pid for s in samples}),
        "images": len(samples),
        "cameras": len({s.camid for s in samples}),
    }


def relabel(samples: Sequence[Sample]) -> list[Sample]:
    """Map the identities of a training split to ``0..num_ids-1`` (sorted original order)."""
    mapping = {pid: i for i, pid in enumerate(sorted({s.pid for s in samples}))}
    return [Sample(s.path, mapping[s.pid], s.camid, s.mask) for s in samples]


@dataclass
class ReidDataset:
    """The splits of a re-ID data set.

    ``train`` pids are relabelled to ``0..num_train_ids-1``; ``query``/``gallery`` keep the original
    ids (distractors and offsets included). ``protocol`` names the evaluation protocol, a key of
    ``reid.data.protocols.PROTOCOLS`` (``market``, ``cuhk03``, ``hands``); its rules are
    :attr:`evaluation_protocol`. Hand sets carry ``draws``: one ``(query, gallery)`` pair per seeded
    draw; ``query``/``gallery`` are then the first draw. ``val`` holds the training images held out
    for model selection (counted in the train statistics).
    """

    name: str
    train: list[Sample]
    query: list[Sample]
    gallery: list[Sample]
    protocol: str = "market"
    val: list[Sample] = field(default_factory=list)
    draws: list[tuple[list[Sample], list[Sample]]] | None = None
    root: str = ""

    def __post_init__(self) -> None:
        # a registered Protocol or its name; an unknown name fails here, suggesting the closest one
        self.protocol = get_protocol(str(getattr(self.protocol, "name", self.protocol))).name

    @property
    def evaluation_protocol(self) -> Protocol:
        """The rules of :attr:`protocol` (camera filter, single-gallery-shot draws, validation)."""
        return get_protocol(self.protocol)

    @property
    def num_train_ids(self) -> int:
        return len({s.pid for s in self.train})

    @property
    def has_masks(self) -> bool:
        return any(s.mask is not None for s in self.train)

    def stats(self) -> dict[str, dict[str, int]]:
        """Identities, images and cameras per split; train includes the validation images."""
        return {
            "train": split_stats(self.train + self.val),
            "query": split_stats(self.query),
            "gallery": split_stats(self.gallery),
        }

    def summary(self) -> str:
        """A small table of :meth:`stats`, as printed at load time."""
        stats = self.stats()
        lines = [
            f"=> {self.name}" + (f" ({self.root})" if self.root else ""),
            f"  {'split':<8} | {'ids':>6} | {'images':>8} | {'cameras':>7}",
            "  " + "-" * 38,
        ]
        for split, s in stats.items():
            lines.append(f"  {split:<8} | {s['ids']:>6} | {s['images']:>8} | {s['cameras']:>7}")
        if self.val:
            lines.append(f"  ({len(self.val)} training images held out for validation)")
        if self.draws:
            lines.append(f"  ({len(self.draws)} seeded query/gallery draws)")
        return "\n".join(lines)


def require_dir(path: Path, what: str, hint: str) -> Path:
    """Return ``path`` if it is a folder, else raise a DatasetError naming the expected layout."""
    if not path.is_dir():
        raise DatasetError(f"{what}: folder not found: {path}; {hint}")
    return path
