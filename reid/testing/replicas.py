"""Synthetic replicas of every supported data set in its real on-disk format, from a seed.

``write_replica(name, root, seed=0, scale=1.0)`` writes a replica under ``root`` that the parser
``name`` reads with ``root=root``. At ``scale=1.0`` the split sizes equal the real data set's
(:data:`REAL_COUNTS`: each parser's ``PUBLISHED`` counts); smaller scales keep the images per identity and
shrink the number of identities. ``images``: ``"render"`` (synthetic persons / hands that need
learning to tell apart), ``"flat"`` (one colour per identity, fast) or ``"empty"`` (zero-byte
placeholders, for name/count tests only; they cannot be decoded).
"""
from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from reid.data.datasets import PUBLISHED, DatasetError
from reid.registry import suggestion

#: The published split sizes (split -> (ids, images, cameras)) of the data sets with a replica,
#: as the parsers declare them; a replica at ``scale=1`` reproduces them exactly.
REAL_COUNTS: dict[str, dict[str, tuple[int, int, int]]] = {k: v for k, v in PUBLISHED.items() if k != "market1501"}
# Generator details beyond the split sizes (from the real files):
DUKE_DISTRACTORS = (408, 3)  # ids seen by one camera, images each
MSMT17_VAL = 2373
CUHK03_PAIR_IDS = (843, 440, 77, 58, 49)  # identities per camera pair in cuhk-03.mat
ASPECT_SIZES = {  # aspect -> (train ids, train images, test ids, query images)
    aspect: (*PUBLISHED[f"hands11k_{aspect.replace(' ', '_')}"]["train"][:2],
             *PUBLISHED[f"hands11k_{aspect.replace(' ', '_')}"]["query"][:2])
    for aspect in ("dorsal right", "dorsal left", "palmar right", "palmar left")
}
HANDS_SUBJECTS, HANDS_IMAGES = 190, 11076
# HD: train ids/images, test ids/query images, extra ids/images (the gallery less one image per test id)
HD_SIZES = (*PUBLISHED["hd"]["train"][:2], *PUBLISHED["hd"]["query"][:2],
            PUBLISHED["hd"]["gallery"][0] - PUBLISHED["hd"]["query"][0],
            PUBLISHED["hd"]["gallery"][1] - PUBLISHED["hd"]["query"][0])


def spread(total: int, n: int) -> list[int]:
    """``n`` counts summing to ``total``, as even as possible (larger ones first)."""
    base, rem = divmod(total, n)
    return [base + (i < rem) for i in range(n)]


def scaled(n: int, scale: float, minimum: int = 2) -> int:
    return n if scale >= 1 else max(minimum, int(round(n * scale)))


class ImageWriter:
    """Writes images for (identity, camera) pairs: rendered, flat or empty files."""

    def __init__(self, rng: np.random.Generator, mode: str, size: tuple[int, int], kind: str = "person",
                 cameras: int = 8):
        if mode not in ("render", "flat", "empty"):
            raise DatasetError(f"replica images must be render, flat or empty, got '{mode}'")
        self.rng, self.mode, self.size, self.kind = rng, mode, size, kind
        self._ids: dict[object, object] = {}
        self._made: set[Path] = set()
        self._cams = None
        if mode == "render" and kind == "person":
            from reid.data.persons import make_cameras

            self._cams = make_cameras(cameras, rng)

    def _identity(self, key):
        if key not in self._ids:
            if self.mode == "flat":
                self._ids[key] = self.rng.integers(0, 256, 3).astype(np.uint8)
            elif self.kind == "person":
                from reid.data.persons import make_identity

                self._ids[key] = make_identity(self.rng)
            else:
                self._ids[key] = make_hand(self.rng)
        return self._ids[key]

    def image(self, key, camid: int = 0) -> np.ndarray:
        ident = self._identity(key)
        if self.mode == "flat":
            return np.broadcast_to(ident, (*self.size, 3)).copy()
        if self.kind == "person":
            from reid.data.persons import render_person

            return render_person(ident, self.rng, camid, self.size, self._cams)[0]
        return render_hand(ident, self.rng, self.size)

    def write(self, path: Path, key, camid: int = 0) -> None:
        if path.parent not in self._made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(path.parent)
        if self.mode == "empty":
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
            return
        img = Image.fromarray(self.image(key, camid))
        if path.suffix == ".png":
            img.save(path)
        else:
            img.save(path, quality=90)


# ------------------------------------------------------------------------------------ hands


def make_hand(rng: np.random.Generator) -> dict:
    """A random hand: skin colour, palm size, finger lengths/widths, nail and ring marks."""
    return {
        "skin": rng.uniform([150, 90, 60], [250, 200, 170]),
        "palm": rng.uniform(0.22, 0.32, 2),
        "fingers": rng.uniform(0.18, 0.34, 5) * np.array([0.7, 1, 1.1, 1, 0.8]),
        "widths": rng.uniform(0.045, 0.075, 5),
        "spread": rng.uniform(0.08, 0.2),
        "mark": rng.uniform(-0.2, 0.2, 2),
        "mark_colour": rng.uniform(40, 140, 3),
    }


def render_hand(hand: dict, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Draw ``hand`` (uint8 [H, W, 3]) with random rotation, scale, shift and lighting."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = (xx + 0.5) / w - 0.5, (yy + 0.5) / h - 0.5
    ang = rng.uniform(-0.4, 0.4)
    s = rng.uniform(0.85, 1.15)
    u, v = u - rng.uniform(-0.06, 0.06), v - rng.uniform(-0.06, 0.06)
    u, v = (np.cos(ang) * u + np.sin(ang) * v) / s, (-np.sin(ang) * u + np.cos(ang) * v) / s
    pw, ph = hand["palm"]
    mask = (u / pw) ** 2 + ((v - 0.15) / ph) ** 2 < 1
    for i in range(5):
        x0 = (i - 2) * hand["spread"] * (1.6 if i == 0 else 1)
        length, width = hand["fingers"][i], hand["widths"][i]
        top = 0.15 - ph * 0.6 - length
        mask |= (np.abs(u - x0) < width) & (v > top) & (v < 0.15)
    mu, mv = hand["mark"]
    mark = mask & ((u - mu) ** 2 + (v - 0.15 - mv) ** 2 < 0.003)
    bg = rng.uniform(20, 230, 3)
    light = rng.uniform(0.8, 1.2)
    img = np.empty((h, w, 3), np.float32)
    img[:] = bg
    img[mask] = hand["skin"] * light
    img[mark] = hand["mark_colour"] * light
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _hands11k(root: Path, rng: np.random.Generator, scale: float, writer: ImageWriter) -> None:
    out = root / "11k"
    (out / "Hands").mkdir(parents=True, exist_ok=True)
    n_subjects = scaled(HANDS_SUBJECTS, scale, 12)
    subjects = np.sort(rng.choice(np.arange(0, 1700), n_subjects, replace=False))
    rows = []
    for aspect, (n_tr, i_tr, n_te, q_te) in ASPECT_SIZES.items():
        n_tr2, n_te2 = scaled(n_tr, scale), scaled(n_te, scale)
        per_tr = i_tr / n_tr
        per_te = (q_te + n_te) / n_te
        ids = np.sort(rng.choice(subjects, n_tr2 + n_te2, replace=False))
        counts = spread(i_tr if scale >= 1 else max(2 * n_tr2, round(per_tr * n_tr2)), n_tr2)
        counts += spread(q_te + n_te if scale >= 1 else max(2 * n_te2, round(per_te * n_te2)), n_te2)
        for pid, c in zip(ids, counts):
            rows.extend((int(pid), aspect, 0) for _ in range(c))
    n_acc = HANDS_IMAGES - len(rows) if scale >= 1 else max(n_subjects, len(rows) // 3)
    aspects = list(ASPECT_SIZES)
    for i in range(n_acc):
        rows.append((int(subjects[i % n_subjects]), aspects[i % 4], 1))
    order = rng.permutation(len(rows))
    with open(out / "HandInfo.csv", "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["id", "age", "gender", "skinColor", "accessories", "nailPolish", "aspectOfHand",
                     "imageName", "irregularities"])
        for n, k in enumerate(order):
            pid, aspect, acc = rows[k]
            name = f"Hand_{n + 2:07d}.jpg"
            pid_str = f"{pid:07d}" + (" " if n == 0 else "")  # the real file has one trailing space
            wr.writerow([pid_str, 20 + pid % 50, "male" if pid % 2 else "female", "fair", acc, 0, aspect, name, 0])
            writer.write(out / "Hands" / name, pid)


def _hd(root: Path, rng: np.random.Generator, scale: float, writer: ImageWriter) -> None:
    n_tr, i_tr, n_te, q_te, n_ex, i_ex = HD_SIZES
    n_tr2, n_te2, n_ex2 = scaled(n_tr, scale), scaled(n_te, scale), scaled(n_ex, scale)
    if scale < 1:
        i_tr, q_te, i_ex = (round(i_tr / n_tr * n_tr2), round(q_te / n_te * n_te2) + 0, round(i_ex / n_ex * n_ex2))
        q_te = max(q_te, n_te2)
        i_tr = max(i_tr, 2 * n_tr2)
        i_ex = max(i_ex, n_ex2)
    base = root / "HD" / "Original Images"
    counts = spread(i_tr, n_tr2) + spread(q_te + n_te2, n_te2)
    for pid, c in enumerate(counts, start=1):
        for n in range(1, c + 1):
            writer.write(base / "1-501" / f"{pid}_{n}.jpg", pid)
    for j, c in enumerate(spread(i_ex, n_ex2)):
        pid = len(counts) + 1 + j
        for n in range(1, c + 1):
            writer.write(base / "502-712" / f"{pid}_{n}.jpg", pid)


# ------------------------------------------------------------------------------------ bodies


def _test_cams(rng: np.random.Generator, n_query: int, n_gallery: int, cams: int) -> tuple[list[int], list[int]]:
    """Cameras for one test id: queries on distinct cameras, gallery starting on other cameras."""
    start = int(rng.integers(cams))
    q = [(start + j) % cams for j in range(n_query)]
    g = [(start + n_query + j) % cams for j in range(n_gallery)]
    return q, g


def _market_style(out: Path, rng, writer: ImageWriter, *, n_train: int, i_train: int, n_test: int,
                  i_query: int, i_gallery: int, cams: int, name: Callable[[int, int, int], str],
                  distractors: tuple[int, int] = (0, 0)) -> None:
    """Write ``{bounding_box_train,query,bounding_box_test}`` with the given split sizes."""
    frame = [0]

    def put(split: str, pid: int, cam: int) -> None:
        frame[0] += 1
        writer.write(out / split / name(pid, cam, frame[0]), pid, cam)

    pid = 0
    for c in spread(i_train, n_train):
        pid += 1
        for j in range(c):
            put("bounding_box_train", pid, (pid + j) % cams)
    n_dis, per_dis = distractors
    for nq, ng in zip(spread(i_query, n_test), spread(i_gallery - n_dis * per_dis, n_test)):
        pid += 1
        q, g = _test_cams(rng, nq, ng, cams)
        for c in q:
            put("query", pid, c)
        for c in g:
            put("bounding_box_test", pid, c)
    for _ in range(n_dis):
        pid += 1
        cam = int(rng.integers(cams))
        for _ in range(per_dis):
            put("bounding_box_test", pid, cam)


def _duke(root: Path, rng, scale: float, writer: ImageWriter) -> None:
    (n_tr, i_tr, _), (n_q, i_q, _), (_, i_g, cams) = REAL_COUNTS["dukemtmcreid"].values()
    n_dis, per_dis = DUKE_DISTRACTORS
    if scale < 1:
        n_tr2, n_q2, n_dis = scaled(n_tr, scale), scaled(n_q, scale), scaled(n_dis, scale, 1)
        i_tr, i_q = round(i_tr / n_tr * n_tr2), max(n_q2, round(i_q / n_q * n_q2))
        i_g = max(n_q2 * 2, round((i_g - DUKE_DISTRACTORS[0] * per_dis) / n_q * n_q2)) + n_dis * per_dis
        n_tr, n_q = n_tr2, n_q2
    _market_style(root / "DukeMTMC-reID", rng, writer, n_train=n_tr, i_train=i_tr, n_test=n_q, i_query=i_q,
                  i_gallery=i_g, cams=cams, name=lambda p, c, f: f"{p:04d}_c{c + 1}_f{f:07d}.jpg",
                  distractors=(n_dis, per_dis))


def _cuhk03_np(root: Path, rng, scale: float, writer: ImageWriter) -> None:
    for kind in ("labeled", "detected"):
        (n_tr, i_tr, _), (n_te, i_q, _), (_, i_g, cams) = REAL_COUNTS[f"cuhk03_{kind}"].values()
        if scale < 1:
            n_tr2, n_te2 = scaled(n_tr, scale), scaled(n_te, scale)
            i_tr, i_q = round(i_tr / n_tr * n_tr2), 2 * n_te2
            i_g, n_tr, n_te = max(2 * n_te2, round(i_g / n_te * n_te2)), n_tr2, n_te2
        _market_style(root / "cuhk03-np" / kind, rng, writer, n_train=n_tr, i_train=i_tr, n_test=n_te,
                      i_query=i_q, i_gallery=i_g, cams=cams,
                      name=lambda p, c, f: f"{p:04d}_c{c + 1}_{f}.png")


def _msmt17(root: Path, rng, scale: float, writer: ImageWriter, version: str = "v1") -> None:
    (n_tr, i_trv, _), (n_te, i_q, _), (_, i_g, cams) = REAL_COUNTS["msmt17"].values()
    i_val = MSMT17_VAL
    if scale < 1:
        n_tr2, n_te2 = scaled(n_tr, scale), scaled(n_te, scale)
        i_trv, i_val = round(i_trv / n_tr * n_tr2), max(1, round(i_val / n_tr * n_tr2))
        i_q, i_g = max(n_te2, round(i_q / n_te * n_te2)), max(2 * n_te2, round(i_g / n_te * n_te2))
        n_tr, n_te = n_tr2, n_te2
    folder, train_dir, test_dir = (("MSMT17_V1", "train", "test") if version == "v1"
                                   else ("MSMT17_V2", "mask_train_v2", "mask_test_v2"))
    base = root / folder
    base.mkdir(parents=True, exist_ok=True)
    frame = [0]

    def put(sub: str, pid: int, cam: int, idx: int) -> str:
        frame[0] += 1
        rel = f"{pid:04d}/{pid:04d}_{idx:03d}_{cam + 1:02d}_0303morning_{frame[0] % 10000:04d}_0.jpg"
        writer.write(base / sub / rel, ("train" if sub == train_dir else "test", pid), cam)
        return f"{rel} {pid}"

    lists: dict[str, list[str]] = {"train": [], "val": [], "query": [], "gallery": []}
    for pid, (c, n_val) in enumerate(zip(spread(i_trv, n_tr), spread(i_val, n_tr))):
        for j in range(c):
            line = put(train_dir, pid, (pid + j) % cams, j)
            lists["val" if j < min(n_val, c - 1) else "train"].append(line)
    for pid, (nq, ng) in enumerate(zip(spread(i_q, n_te), spread(i_g, n_te))):
        q, g = _test_cams(rng, nq, ng, cams)
        for j, c in enumerate(q):
            lists["query"].append(put(test_dir, pid, c, j))
        for j, c in enumerate(g):
            lists["gallery"].append(put(test_dir, pid, c, nq + j))
    for split, lines in lists.items():
        (base / f"list_{split}.txt").write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------ CUHK03 .mat


def write_cuhk03_mat(root: Path, rng: np.random.Generator, writer: ImageWriter,
                     names: dict[str, list[str]], num_testsets: int = 20, test_ids: int = 100) -> Path:
    """Write ``cuhk03_release/cuhk-03.mat`` (HDF5, MATLAB v7.3 layout) holding an image for every
    ``<pair>_<pid>_<view>_<n>.png`` in ``names[kind]`` and random classic ``testsets``."""
    import h5py

    parsed = {k: [tuple(int(x) for x in n[:-4].split("_")) for n in v] for k, v in names.items()}
    pairs = max(p for v in parsed.values() for p, *_ in v)
    pids = [max([pid for v in parsed.values() for p, pid, *_ in v if p == q] or [0]) for q in range(1, pairs + 1)]
    path = root / "cuhk03_release" / "cuhk-03.mat"
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = writer.size
    with h5py.File(path, "w") as f:
        refs_group = f.create_group("#refs#")
        empty = refs_group.create_dataset("empty", data=np.zeros(2, np.uint64))
        empty.attrs["MATLAB_empty"] = 1
        counter = [0]
        shared: dict[tuple[int, int, int], object] = {}  # flat/empty: one stored image per id and view

        def store(data: np.ndarray):
            counter[0] += 1
            return refs_group.create_dataset(f"r{counter[0]}", data=data).ref

        def image_ref(q: int, pid: int, view: int):
            if writer.mode == "render":
                return store(writer.image((q, pid), view - 1).T)
            if (q, pid, view) not in shared:
                img = np.zeros((h, w, 3), np.uint8) if writer.mode == "empty" else writer.image((q, pid))
                shared[(q, pid, view)] = store(img.T)
            return shared[(q, pid, view)]

        for kind, items in parsed.items():
            present = set(items)
            pair_refs = []
            for q in range(1, pairs + 1):
                cells = np.empty((10, pids[q - 1]), dtype=h5py.ref_dtype)
                for pid in range(1, pids[q - 1] + 1):
                    for n in range(1, 11):
                        view = 1 if n <= 5 else 2
                        if (q, pid, view, n) in present:
                            cells[n - 1, pid - 1] = image_ref(q, pid, view)
                        else:
                            cells[n - 1, pid - 1] = empty.ref
                pair_refs.append(store(cells))
            f.create_dataset(kind, data=np.array([pair_refs], dtype=h5py.ref_dtype))
        all_ids = [(q, pid) for q in range(1, pairs + 1) for pid in range(1, pids[q - 1] + 1)]
        sets = []
        for _ in range(num_testsets):
            pick = rng.choice(len(all_ids), min(test_ids, len(all_ids) // 2), replace=False)
            rows = np.array([all_ids[i] for i in sorted(pick)], dtype=np.float64)
            sets.append(store(rows.T))
        f.create_dataset("testsets", data=np.array([sets], dtype=h5py.ref_dtype))
    return path


def _cuhk03_mat(root: Path, rng, scale: float, writer: ImageWriter) -> None:
    import scipy.io as sio

    all_ids = [(q, pid) for q, n in enumerate(CUHK03_PAIR_IDS, start=1) for pid in range(1, scaled(n, scale) + 1)]
    label = {key: i + 1 for i, key in enumerate(all_ids)}
    (n_train, *_), (n_test, *_) = PUBLISHED["cuhk03_labeled"]["train"], PUBLISHED["cuhk03_labeled"]["query"]
    n_train, n_test = scaled(n_train, scale), scaled(n_test, scale)
    order = rng.permutation(len(all_ids))
    train_ids = {all_ids[i] for i in order[:n_train]}
    test_ids = {all_ids[i] for i in order[n_train:n_train + n_test]}
    names: dict[str, list[str]] = {}
    for kind in ("labeled", "detected"):
        files, labels, cams, split = [], [], [], {"train": [], "query": [], "gallery": []}
        for key in all_ids:
            q, pid = key
            for view in (1, 2):
                k = int(rng.integers(3, 6))
                for j, n in enumerate(sorted(rng.choice(np.arange(1, 6), k, replace=False) + 5 * (view - 1))):
                    files.append(f"{q}_{pid:03d}_{view}_{n:02d}.png")
                    labels.append(label[key])
                    cams.append(view)
                    i = len(files)
                    if key in train_ids:
                        split["train"].append(i)
                    elif key in test_ids:
                        split["query" if j == 0 else "gallery"].append(i)
        names[kind] = files
        filelist = np.empty((len(files), 1), dtype=object)
        filelist[:, 0] = files
        sio.savemat(str(root / f"cuhk03_new_protocol_config_{kind}.mat"), {
            "filelist": filelist, "labels": np.array(labels, np.uint16)[:, None],
            "camId": np.array(cams, np.uint8)[:, None],
            **{f"{s}_idx": np.array(v, np.uint16)[:, None] for s, v in split.items()},
        })
    write_cuhk03_mat(root, rng, writer, names, test_ids=scaled(100, scale))


def cuhk03_mat_from_protocol(root: str | Path, protocol_dir: str | Path, seed: int = 0, images: str = "flat",
                             size: tuple[int, int] = (8, 4), kinds: tuple[str, ...] = ("labeled", "detected")) -> Path:
    """A ``cuhk03_release/cuhk-03.mat`` replica for the names of real ``cuhk03_new_protocol_config_*.mat``
    files (copied beside it), so the .mat route reproduces the real protocol counts."""
    import scipy.io as sio

    from reid.data.datasets.cuhk03 import _strings

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    names = {}
    for kind in kinds:
        src = Path(protocol_dir) / f"cuhk03_new_protocol_config_{kind}.mat"
        shutil.copy(src, root / src.name)
        names[kind] = _strings(sio.loadmat(str(src), variable_names=["filelist"])["filelist"])
    rng = np.random.default_rng(seed)
    return write_cuhk03_mat(root, rng, ImageWriter(rng, images, size), names)


# ------------------------------------------------------------------------------------ entry point

GENERATORS = {
    "dukemtmcreid": (_duke, "person"),
    "cuhk03_np": (_cuhk03_np, "person"),
    "cuhk03_mat": (_cuhk03_mat, "person"),
    "msmt17": (_msmt17, "person"),
    "msmt17_v2": (lambda r, g, s, w: _msmt17(r, g, s, w, "v2"), "person"),
    "hands11k": (_hands11k, "hand"),
    "hd": (_hd, "hand"),
}
ALIASES = {"cuhk03_labeled": "cuhk03_np", "cuhk03_detected": "cuhk03_np", "msmt17_v1": "msmt17",
           **{f"hands11k_{a.replace(' ', '_')}": "hands11k" for a in ASPECT_SIZES}}


def write_replica(name: str, root: str | Path, seed: int = 0, scale: float = 1.0, images: str = "render",
                  size: tuple[int, int] | None = None) -> Path:
    """Write a replica of data set ``name`` (a parser name or a key of :data:`GENERATORS`) under
    ``root``; returns ``root``. ``size`` is (H, W), default 32x16 for bodies and 32x32 for hands."""
    key = ALIASES.get(name, name)
    if key not in GENERATORS:
        raise DatasetError(f"no replica generator for '{name}'{suggestion(name, [*GENERATORS, *ALIASES])}")
    gen, kind = GENERATORS[key]
    if not 0 < scale <= 1:
        raise DatasetError(f"replica scale must be in (0, 1], got {scale}")
    size = size or ((32, 16) if kind == "person" else (32, 32))
    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    writer = ImageWriter(rng, images, size, kind, cameras=15)
    gen(root, rng, scale, writer)
    return root


__all__ = ["REAL_COUNTS", "write_replica", "cuhk03_mat_from_protocol", "write_cuhk03_mat", "render_hand", "make_hand"]

