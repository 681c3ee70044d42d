"""A persistent approximate-nearest-neighbour index of a gallery (faiss; ``pip install 'reid[faiss]'``).

Kinds: ``flat`` (exact, the baseline), ``ivf`` (inverted lists of full vectors: ``nlist``,
``nprobe``), ``ivfpq`` (inverted lists of product-quantised codes, ``m`` sub-vectors of ``nbits``
bits each: ``D * 4 / m`` times smaller than ``ivf``), ``hnsw`` (a graph: ``M`` links per node,
``ef_construction``, ``ef_search``; its nodes hold ``codes`` ``flat``, float32 vectors, ``4 D`` bytes
each, or ``sq8``, 8-bit scalar-quantised vectors, ``D`` bytes each, whose distances are
approximate). ``ivf`` / ``ivfpq`` train their lists with plain k-means on the inner product, or
spherical k-means (``spherical=1``: centroids kept on the sphere). A refinement stage
(``refine=R`` >= 1, any approximate kind) keeps a second copy of the vectors, ``refine_codes``
``flat`` (float32, exact: ``4 D`` bytes a vector) or ``sq8`` (8-bit scalar quantised, ``D``
bytes); a search takes ``k * R`` candidates from the index and re-ranks them with
that copy. ``nprobe``, ``ef_search`` and ``refine`` can be changed at search time
(:meth:`GalleryIndex.configure`). Every index ranks by cosine similarity as the
inner product of L2-normalised features: rows are normalised (a float32 copy, chunk by chunk) when
added and queries when searched, and distances are returned as ``1 - cos`` like
:func:`reid.inference.topk_search` with ``metric="cosine"``.

An index file is one uncompressed zip written atomically: ``index.faiss`` (faiss's own format),
``meta.json`` (kind, parameters, count and the input contract: feature dimension and the hashes of
:func:`reid.inference.loading.feature_contract`), ``paths.txt`` (UTF-8, one per line) and, for a
data set split, ``pids.npy`` / ``camids.npy``. A query whose contract differs is refused.
"""
from __future__ import annotations

import io
import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from reid.atomic_io import atomic_write
from reid.registry import UserError

KINDS = ("flat", "ivf", "ivfpq", "hnsw")
#: Parameters of each kind and their defaults (None: derived from the gallery size, see :func:`resolve_params`).
#: ``refine`` 0: no refinement stage.
REFINE: dict[str, int | str] = {"refine": 0, "refine_codes": "flat"}
PARAMS: dict[str, dict[str, int | str | None]] = {
    "flat": {},
    "ivf": {"nlist": None, "nprobe": 16, "spherical": 0, **REFINE},
    "ivfpq": {"nlist": None, "nprobe": 16, "m": None, "nbits": 8, "spherical": 0, **REFINE},
    "hnsw": {"M": 32, "ef_construction": 80, "ef_search": 64, "codes": "flat", **REFINE},
}
#: Parameters that may change at search time (:meth:`GalleryIndex.configure`).
SEARCH_PARAMS = ("nprobe", "ef_search", "refine")
#: Parameters that take one of a few words instead of an integer.
CHOICES = {"refine_codes": ("flat", "sq8"), "codes": ("flat", "sq8")}
#: Training rows per inverted list used to fit the coarse quantiser (faiss warns below 39).
TRAIN_PER_LIST = 64
#: Rows normalised and added per step (bounded memory for memory-mapped galleries).
ADD_CHUNK = 65536
FORMAT = 1
INSTALL = "pip install 'reid[faiss]'"


class GalleryIndexError(UserError, ValueError):
    """A bad index parameter, index file or contract mismatch (printed as one ``error:`` line)."""


class FaissMissingError(UserError, ImportError):
    """faiss is not installed."""


def import_faiss() -> Any:
    """The faiss module, or :class:`FaissMissingError` saying how to install it."""
    try:
        import faiss
    except ImportError:
        raise FaissMissingError(f"the approximate index needs faiss, which is not installed: {INSTALL} "
                                "(or pip install faiss-cpu)") from None
    return faiss


def default_nlist(n: int) -> int:
    """Inverted lists for ``n`` rows: about ``4 * sqrt(n)``, at most ``n // 39`` (faiss's minimum of
    training rows per list), at least 1."""
    return max(1, min(int(round(4 * math.sqrt(n))), n // 39))


def default_m(dim: int) -> int:
    """Product-quantiser sub-vectors for ``dim``: the largest divisor of ``dim`` up to
    ``min(64, dim // 8)`` (64 bytes a vector at 8 bits for D = 512), at least 1."""
    return max(m for m in range(1, max(1, min(64, dim // 8)) + 1) if dim % m == 0)


#: Accepted range of each parameter (inclusive).
RANGES = {"nlist": (1, 2**20), "nprobe": (1, 2**20), "m": (1, 4096), "nbits": (1, 16), "M": (2, 256),
          "ef_construction": (1, 2**16), "ef_search": (1, 2**16), "spherical": (0, 1), "refine": (0, 1024)}


def check_params(kind: str, params: Mapping[str, Any]) -> None:
    """The checks that need no data: ``kind`` known, each of ``params`` one of its parameters, an
    integer within :data:`RANGES` (or one of :data:`CHOICES`), ``nprobe <= nlist`` when both are
    given, ``refine_codes`` only with ``refine >= 1``; else
    :class:`GalleryIndexError` naming the parameter."""
    if kind not in KINDS:
        raise GalleryIndexError(f"unknown index kind {kind!r}; expected one of {', '.join(KINDS)}")
    allowed = PARAMS[kind]
    for key, value in params.items():
        if key not in allowed:
            raise GalleryIndexError(f"index parameter '{key}' does not apply to '{kind}'; "
                                    f"'{kind}' takes {', '.join(allowed) or 'no parameters'}")
        if key in CHOICES:
            if value not in CHOICES[key]:
                raise GalleryIndexError(f"index parameter '{key}' must be one of {', '.join(CHOICES[key])}, "
                                        f"got {value!r}")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise GalleryIndexError(f"index parameter '{key}' must be an integer, got {value!r}")
        lo, hi = RANGES[key]
        if not lo <= value <= hi:
            raise GalleryIndexError(f"index parameter '{key}' must be in [{lo}, {hi}], got {value}")
    if "refine_codes" in params and not params.get("refine"):
        raise GalleryIndexError("index parameter 'refine_codes' needs a refinement stage: set refine >= 1")
    if "nlist" in params and "nprobe" in params and params["nprobe"] > params["nlist"]:
        raise GalleryIndexError(f"index parameter 'nprobe' ({params['nprobe']}) exceeds nlist ({params['nlist']})")


def resolve_params(kind: str, params: Mapping[str, Any], n: int, dim: int) -> dict[str, int | str]:
    """``params`` checked (:func:`check_params`) and completed with the defaults for ``n``
    training rows of dimension ``dim``, then checked against ``n`` and ``dim``."""
    check_params(kind, params)
    out: dict[str, int | str] = {}
    for key, default in PARAMS[kind].items():
        value = params.get(key, default)
        if value is None:
            value = default_nlist(n) if key == "nlist" else default_m(dim)
        out[key] = value if key in CHOICES else int(value)
    if not out.get("refine", 1):
        del out["refine_codes"]  # no refinement stage, no codes
    if "nlist" in out:
        if out["nlist"] > n:
            raise GalleryIndexError(f"index parameter 'nlist' ({out['nlist']}) exceeds the {n} gallery rows it is "
                                    f"trained on; use nlist <= {max(1, n // 39)} (>= 39 rows per list)")
        if out["nprobe"] > out["nlist"]:
            raise GalleryIndexError(f"index parameter 'nprobe' ({out['nprobe']}) exceeds nlist ({out['nlist']})")
    if kind == "ivfpq":
        if dim % out["m"]:
            raise GalleryIndexError(f"index parameter 'm' ({out['m']}) must divide the feature dimension {dim}")
        if n < 2 ** out["nbits"]:
            raise GalleryIndexError(f"index parameter 'nbits' ({out['nbits']}) needs >= {2 ** out['nbits']} rows "
                                    f"to train its codebooks, the gallery has {n}; lower nbits")
    return out


def _normalized(rows: Any) -> np.ndarray:
    """float32 copy of ``rows`` [N, D], each row L2-normalised (zero rows stay zero)."""
    x = np.array(rows, dtype=np.float32, copy=True, order="C")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.divide(x, np.maximum(norms, 1e-12), out=x)
    return x


class GalleryIndex:
    """A faiss index of gallery features with the gallery's paths (and pids/camids) and the input
    contract of the model that computed them. Build with :meth:`build`, open with :meth:`load`."""

    def __init__(self, index: Any, kind: str, params: dict[str, Any], contract: dict[str, Any],
                 paths: list[str], pids: np.ndarray | None = None, camids: np.ndarray | None = None):
        self.index, self.kind, self.params, self.contract = index, kind, params, dict(contract)
        self.paths, self.pids, self.camids = paths, pids, camids

    @property
    def dim(self) -> int:
        return int(self.contract["dim"])

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @classmethod
    def build(cls, features: Any, kind: str = "ivfpq", params: Mapping[str, Any] | None = None,
              contract: Mapping[str, Any] | None = None, paths: Sequence[str] | None = None, pids: Any = None,
              camids: Any = None, seed: int = 0) -> GalleryIndex:
        """An index of ``kind`` over ``features`` [N, D] (array or memory map; normalised here).
        ``ivf`` / ``ivfpq`` are trained on ``min(N, TRAIN_PER_LIST * nlist)`` rows drawn with
        ``seed``. ``contract``: ``{"config", "weights"}`` hashes (the dimension is added);
        ``paths`` default to the row numbers."""
        faiss = import_faiss()
        n, dim = _shape(features)
        if n == 0:
            raise GalleryIndexError("no gallery features to index")
        p = resolve_params(kind, dict(params or {}), n, dim)
        ip = faiss.METRIC_INNER_PRODUCT
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            index = (faiss.IndexHNSWFlat(dim, p["M"], ip) if p["codes"] == "flat" else
                     faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, p["M"], ip))
            index.hnsw.efConstruction = p["ef_construction"]
        else:
            quantizer = faiss.IndexFlatIP(dim)
            if kind == "ivf":
                index = faiss.IndexIVFFlat(quantizer, dim, p["nlist"], ip)
            else:
                index = faiss.IndexIVFPQ(quantizer, dim, p["nlist"], p["m"], p["nbits"], ip)
            index.own_fields = True
            quantizer.this.disown()
            index.cp.spherical = bool(p["spherical"])
        if p.get("refine"):
            if p["refine_codes"] == "flat":
                wrapped = faiss.IndexRefineFlat(index)
            else:
                codes = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, ip)
                wrapped = faiss.IndexRefine(index, codes)
                codes.this.disown()
            wrapped.own_fields = True
            index.this.disown()
            index = wrapped
        if not index.is_trained:
            rows = min(n, TRAIN_PER_LIST * p.get("nlist", 1024))  # sq8 codes: 65,536 rows for their ranges
            pick = np.sort(np.random.default_rng(seed).choice(n, rows, replace=False)) if rows < n else slice(None)
            index.train(_normalized(features[pick]))
        made = cls(index, kind, p, {**dict(contract or {}), "dim": dim}, [])
        made.configure()
        made.add(features, paths if paths is not None else [str(i) for i in range(n)], pids, camids)
        return made

    def add(self, features: Any, paths: Sequence[str], pids: Any = None, camids: Any = None) -> None:
        """Append ``features`` [N, D] with their ``paths`` [N] (and ``pids``/``camids`` [N] exactly
        when the index has them), ``ADD_CHUNK`` rows at a time."""
        n, dim = _shape(features)
        if dim != self.dim:
            raise GalleryIndexError(f"features have {dim} dimensions, the index holds {self.dim}")
        if len(paths) != n or any(v is not None and len(v) != n for v in (pids, camids)):
            raise GalleryIndexError(f"{n} feature rows but {len(paths)} paths"
                                    + "".join(f", {len(v)} {k}" for k, v in (("pids", pids), ("camids", camids))
                                              if v is not None))
        bad = next((p for p in paths if "\n" in str(p) or "\r" in str(p)), None)
        if bad is not None:
            raise GalleryIndexError(f"a path with a line break cannot be stored: {bad!r}")
        labelled = self.pids is not None
        if len(self) and (pids is not None) != labelled:
            raise GalleryIndexError("the index holds pids/camids and these features do not" if labelled else
                                    "these features have pids/camids and the index does not hold them")
        for start in range(0, n, ADD_CHUNK):  # a first pass, so that a refused call adds nothing
            bad = ~np.isfinite(np.asarray(features[start:start + ADD_CHUNK])).all(axis=1)
            if bad.any():
                raise GalleryIndexError(f"feature row {start + int(np.argmax(bad))} holds NaN or infinite values")
        for start in range(0, n, ADD_CHUNK):
            self.index.add(_normalized(features[start:start + ADD_CHUNK]))
        self.paths += [str(p) for p in paths]
        if pids is not None:
            old = (self.pids, self.camids) if labelled else (np.zeros(0, np.int64),) * 2
            self.pids = np.concatenate([old[0], np.asarray(pids, np.int64)])
            self.camids = np.concatenate([old[1], np.asarray(camids if camids is not None else np.full(n, -1),
                                                             np.int64)])

    def configure(self, **search: int) -> None:
        """Set the search-time parameters (:data:`SEARCH_PARAMS`; omitted ones keep their value):
        checked like :func:`check_params`, ``nprobe <= nlist``, ``refine`` >= 1 only on an index built
        with a refinement stage (and 0 never on one); else :class:`GalleryIndexError` naming it."""
        for key in search:
            if key not in SEARCH_PARAMS:
                raise GalleryIndexError(f"index parameter '{key}' cannot change at search time; "
                                        f"{', '.join(SEARCH_PARAMS)} can")
        check_params(self.kind, search)
        if "nprobe" in search and search["nprobe"] > self.params["nlist"]:
            raise GalleryIndexError(f"index parameter 'nprobe' ({search['nprobe']}) exceeds nlist "
                                    f"({self.params['nlist']})")
        if "refine" in search and bool(search["refine"]) != bool(self.params.get("refine")):
            raise GalleryIndexError("index parameter 'refine' must be >= 1: the index re-ranks with its refine codes"
                                    if self.params.get("refine") else
                                    "index parameter 'refine' needs a refinement stage; this index was built "
                                    "without one (rebuild it with refine >= 1)")
        self.params = {**self.params, **{k: int(v) for k, v in search.items()}}
        base = self.index
        if self.params.get("refine"):
            base.k_factor = float(self.params["refine"])
            base = import_faiss().downcast_index(base.base_index)
        if "nprobe" in self.params:
            base.nprobe = self.params["nprobe"]
        if "ef_search" in self.params:
            base.hnsw.efSearch = self.params["ef_search"]

    def check(self, contract: Mapping[str, Any], where: str = "index") -> None:
        """Refuse features whose ``contract`` (``dim`` and the ``config`` / ``weights`` hashes)
        differs from the one this index was built with: one :class:`GalleryIndexError` line."""
        for key, what in (("dim", "feature dimension"), ("config", "config hash"), ("weights", "weights hash")):
            mine, theirs = self.contract.get(key), contract.get(key)
            if mine is None or theirs is None or mine != theirs:
                raise GalleryIndexError(f"{where}: built from another model's features ({what} {mine}, these features' "
                                  f"{theirs}); rebuild it with tools/index.py and this checkpoint")

    def search(self, query: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances ``1 - cos`` [Q, k'], gallery rows [Q, k'] int64), nearest first, ``k' = min(k, N)``
        for ``query`` [Q, D]; with ``hnsw`` the search keeps ``max(ef_search, k)`` candidates; with a
        refinement stage the distances are those of the refine codes (``sq8``: approximate)."""
        q = _normalized(np.asarray(query))
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise GalleryIndexError(f"queries have shape {list(q.shape)}, the index holds {self.dim}-dimensional "
                                    "features")
        k = min(int(k), len(self))
        if k < 1:
            raise GalleryIndexError("k must be >= 1 and the index not empty")
        sim, idx = self.index.search(q, k)
        return (1.0 - sim).astype(np.float32), idx.astype(np.int64)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index file atomically (see the module docstring); returns ``path``."""
        faiss = import_faiss()
        meta = {"format": FORMAT, "kind": self.kind, "params": self.params, "count": len(self),
                "contract": self.contract, "labels": self.pids is not None}

        def write(f) -> None:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
                z.writestr("meta.json", json.dumps(meta, indent=1))
                z.writestr("paths.txt", "\n".join(self.paths).encode("utf-8"))
                if self.pids is not None:
                    for name, arr in (("pids", self.pids), ("camids", self.camids)):
                        buf = io.BytesIO()
                        np.save(buf, arr)
                        z.writestr(f"{name}.npy", buf.getvalue())
                with z.open("index.faiss", "w", force_zip64=True) as member:
                    faiss.write_index(self.index, faiss.PyCallbackIOWriter(member.write))

        return atomic_write(path, write)

    @classmethod
    def load(cls, path: str | os.PathLike) -> GalleryIndex:
        """The index in file ``path`` (written by :meth:`save`)."""
        faiss = import_faiss()
        path = Path(path)
        if not path.is_file():
            raise GalleryIndexError(f"{path}: index file not found")
        try:
            with zipfile.ZipFile(path) as z:
                meta = json.loads(z.read("meta.json"))
                if meta.get("format") != FORMAT:
                    raise GalleryIndexError(f"{path}: index format {meta.get('format')}, this version reads {FORMAT}")
                text = z.read("paths.txt").decode("utf-8")
                paths = text.split("\n") if text or meta["count"] else []
                pids = camids = None
                if meta["labels"]:
                    pids, camids = (np.load(io.BytesIO(z.read(f"{k}.npy"))) for k in ("pids", "camids"))
                with z.open("index.faiss") as member:
                    index = faiss.read_index(faiss.PyCallbackIOReader(member.read))
        except (zipfile.BadZipFile, KeyError, ValueError, UnicodeDecodeError) as exc:
            raise GalleryIndexError(f"{path}: not an index file written by tools/index.py ({exc})") from None
        if index.ntotal != meta["count"] or len(paths) != meta["count"]:
            raise GalleryIndexError(f"{path}: damaged ({index.ntotal} vectors, {len(paths)} paths, "
                                    f"meta says {meta['count']})")
        made = cls(index, meta["kind"], meta["params"], meta["contract"], paths, pids, camids)
        made.configure()
        return made

    def nbytes(self) -> int:
        """Bytes of the serialised faiss index (the vectors, codes, lists and graph)."""
        faiss = import_faiss()
        counter = _Counter()
        faiss.write_index(self.index, faiss.PyCallbackIOWriter(counter))
        return counter.n


class _Counter:
    """A write callback that only counts bytes."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, data: bytes) -> int:
        self.n += len(data)
        return len(data)


def _shape(features: Any) -> tuple[int, int]:
    shape = getattr(features, "shape", None)
    if shape is None or len(shape) != 2:
        raise GalleryIndexError(f"expected features [N, D], got shape {None if shape is None else list(shape)}")
    return int(shape[0]), int(shape[1])
