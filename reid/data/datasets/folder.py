"""``folder``: a data set described by its folders, no code: ``root/{train,query,gallery}/``.

Two layouts (``layout``): ``names``, every image directly in its split folder, identity and camera
parsed from the file name by ``pattern`` (a regular expression with named groups ``pid`` and
``camid`` that must match the whole name without its extension; cameras numbered from
``camid_base`` on disk); ``subfolders``, one folder per identity named by its integer id, camera
parsed from the file name (``camid`` group) or the constant ``camera``. Identities in ``junk_pids``
are dropped everywhere, those in ``distractor_pids`` kept in the gallery only (Market-1501: -1 / 0).
Optional body-part masks: ``root/masks/<split folder>/<same relative path>.png``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, Sequence

from reid.registry import DATASETS, ConfigError

from .base import DatasetError, ReidDataset, Sample
from .common import (
    IMAGE_EXTS,
    SPLITS,
    FileIndex,
    camera_id,
    check_shared_keys,
    find_dir,
    keep_sample,
    splits_dataset,
)

#: Matches Market-1501 (``0002_c1s1_000451_03``), DukeMTMC-reID (``0001_c2_f0046182``), CUHK03-NP.
DEFAULT_PATTERN = r"(?P<pid>-?\d+)_c(?P<camid>\d+).*"
Layout = Literal["names", "subfolders"]
HINT = ("expected {root}/{{{dirs}}}/ holding images named to match dataset.pattern ({layout} layout); "
        "see docs/datasets.md (a data set without code)")


def compile_pattern(pattern: str, needs: Sequence[str]) -> re.Pattern:
    """``pattern`` compiled; a ConfigError naming ``dataset.pattern`` when it is not a valid regular
    expression or lacks one of the named groups ``needs``."""
    try:
        rx = re.compile(pattern)
    except (re.error, TypeError) as exc:
        raise ConfigError(f"dataset.pattern: '{pattern}' is not a regular expression ({exc}); "
                          f"expected e.g. '{DEFAULT_PATTERN}'") from exc
    missing = [g for g in needs if g not in rx.groupindex]
    if missing:
        groups = " and ".join(f"(?P<{g}>...)" for g in missing)
        raise ConfigError(f"dataset.pattern: '{pattern}' has no named group {groups}; expected a regular "
                          f"expression such as '{DEFAULT_PATTERN}'")
    return rx


def _integer(match: re.Match, group: str, path: str, pattern: str) -> int:
    text = match.group(group)
    try:
        return int(text)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: group '{group}' of dataset.pattern '{pattern}' matched {text!r}; "
                           "expected an integer") from None


class _Reader:
    """Reads one split folder into samples with the keywords of :func:`folder`."""

    def __init__(self, rx: re.Pattern, camera: int | None, camid_base: int, junk: set[int],
                 distractors: set[int], masks: Path, index: FileIndex):
        self.rx, self.camera, self.camid_base = rx, camera, camid_base
        self.junk, self.distractors, self.masks, self.index = junk, distractors, masks, index

    def sample(self, path: str, rel: str, split: str, folder_pid: int | None) -> Sample | None:
        """The sample of image ``path`` (``rel``: relative to its split folder), None when dropped."""
        stem = os.path.splitext(os.path.basename(path))[0]
        pid, camid = folder_pid, self.camera
        if folder_pid is None or camid is None:
            m = self.rx.fullmatch(stem)
            if m is None:
                raise DatasetError(f"{path}: file name does not match dataset.pattern '{self.rx.pattern}'; "
                                   "expected the pattern to match the whole name without its extension")
            if folder_pid is None:
                pid = _integer(m, "pid", path, self.rx.pattern)
            elif "pid" in self.rx.groupindex and m.group("pid") is not None \
                    and _integer(m, "pid", path, self.rx.pattern) != folder_pid:
                raise DatasetError(f"{path}: the name says identity {m.group('pid')} but the image is in the "
                                   f"folder of identity {folder_pid}; expected the same identity")
            if camid is None:
                camid = camera_id(_integer(m, "camid", path, self.rx.pattern), self.camid_base, path)
        if not keep_sample(pid, split, self.junk, self.distractors):
            return None
        mask = str(self.masks / (os.path.splitext(rel)[0] + ".png"))
        return Sample(path, pid, camid, mask if self.index.exists(mask) else None)

    def names(self, folder: Path, split: str) -> list[Sample]:
        """``names`` layout: the images directly in ``folder``, sorted by name."""
        out = []
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.is_dir():
                raise DatasetError(f"{entry.path}: a sub-folder in a split folder; expected image files "
                                   "(layout names), or set dataset.layout=subfolders for a folder per identity")
            if entry.name.lower().endswith(IMAGE_EXTS):
                s = self.sample(entry.path, entry.name, split, None)
                if s is not None:
                    out.append(s)
        return out

    def subfolders(self, folder: Path, split: str) -> list[Sample]:
        """``subfolders`` layout: ``folder/<pid>/<image>``, sorted by folder then name."""
        out = []
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if not entry.is_dir():
                if entry.name.lower().endswith(IMAGE_EXTS):
                    raise DatasetError(f"{entry.path}: an image outside an identity folder; expected "
                                       f"{folder}/<integer id>/<image> (layout subfolders), or set "
                                       "dataset.layout=names")
                continue
            try:
                pid = int(entry.name)
            except ValueError:
                raise DatasetError(f"{entry.path}: identity folder name {entry.name!r} is not an integer; "
                                   "expected one folder per identity named by its id (e.g. 0007)") from None
            for image in sorted(os.scandir(entry.path), key=lambda e: e.name):
                if image.is_dir():
                    raise DatasetError(f"{image.path}: a folder inside an identity folder; expected images")
                if image.name.lower().endswith(IMAGE_EXTS):
                    s = self.sample(image.path, f"{entry.name}/{image.name}", split, pid)
                    if s is not None:
                        out.append(s)
        return out


def check_folder_keywords(kw: dict[str, Any]) -> tuple[re.Pattern, str, set[int], set[int]]:
    """The keywords of :func:`folder` checked as a whole, before any file is read (also at config
    load: ``folder.check_keywords``): a ConfigError naming ``dataset.<key>``. Returns ``(compiled
    pattern, protocol, junk ids, distractor ids)``."""
    protocol, junk, distractors = check_shared_keys(kw["protocol"], kw["junk_pids"], kw["distractor_pids"],
                                                    kw["camid_base"])
    layout, camera = kw["layout"], kw["camera"]
    if layout not in ("names", "subfolders"):
        raise ConfigError(f"dataset.layout: expected one of names, subfolders, got {layout!r}")
    if camera is not None and (not isinstance(camera, int) or isinstance(camera, bool) or camera < 0):
        raise ConfigError(f"dataset.camera: expected null or an integer >= 0 (a 0-based camera), got {camera!r}")
    for split in SPLITS:
        name = kw[f"{split}_dir"]
        if not isinstance(name, str) or not name or os.sep in name or name in (".", ".."):
            raise ConfigError(f"dataset.{split}_dir: expected a folder name under dataset.root, got {name!r}")
    needs = (["pid"] if layout == "names" else []) + (["camid"] if camera is None else [])
    return compile_pattern(kw["pattern"], needs), protocol, junk, distractors


@DATASETS.register("folder")
def folder(
    root: str = "datasets",
    layout: Layout = "names",
    pattern: str = DEFAULT_PATTERN,
    camid_base: int = 1,
    camera: int | None = None,
    train_dir: str = "train",
    query_dir: str = "query",
    gallery_dir: str = "gallery",
    junk_pids: Sequence[int] = (-1,),
    distractor_pids: Sequence[int] = (0,),
    protocol: str = "market",
) -> ReidDataset:
    """A data set from ``root/{train_dir,query_dir,gallery_dir}/`` (see the module docstring).

    ``pattern`` needs the named groups ``pid`` (layout ``names``) and ``camid`` (unless ``camera``,
    a constant 0-based camera for every image, is set); ``protocol`` is any registered protocol.
    """
    kw = dict(locals())
    rx, protocol, junk, distractors = check_folder_keywords(kw)
    dirs = {split: kw[f"{split}_dir"] for split in SPLITS}
    hint = HINT.format(root=root, dirs=",".join(dirs.values()), layout=layout)
    base = find_dir(root, [""], "folder", hint)
    index = FileIndex()
    splits, where = {}, {}
    for split in SPLITS:
        path = find_dir(base, [dirs[split]], "folder", hint)
        reader = _Reader(rx, camera, camid_base, junk, distractors, base / "masks" / dirs[split], index)
        splits[split] = reader.names(path, split) if layout == "names" else reader.subfolders(path, split)
        where[split] = str(path)
    return splits_dataset("folder", splits, protocol, str(base), where)


folder.check_keywords = check_folder_keywords  # called by the config loader with the resolved keywords
