"""reid.inference.index (faiss): each kind against the exact search, save/load, add, the model
contract, parameter checks; tools/index.py and tools/search.py --index on a tiny checkpoint."""
from __future__ import annotations

import csv
import runpy
import sys

import numpy as np
import pytest
from inference_tools import ROOT, save_tiny_checkpoint, tiny_overrides
from PIL import Image

from reid.inference.index import FaissMissingError, GalleryIndex, GalleryIndexError, import_faiss, resolve_params
from reid.inference.search import topk_search
from reid.registry import UserError

faiss = pytest.importorskip("faiss", reason="faiss is not installed (pip install 'reid[faiss]')")
CONTRACT = {"config": "c" * 16, "weights": "w" * 16}


def clustered(n: int, d: int = 32, ids: int = 200, seed: int = 0) -> np.ndarray:
    """``n`` rows around ``ids`` Gaussian centres (row i of identity i % ids), float32 [n, d]."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((ids, d))
    return (centres[np.arange(n) % ids] + 0.6 * rng.standard_normal((n, d))).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rows = clustered(3040)
    gallery, query = rows[:3000], rows[3000:]  # queries: held-out images of identities 0..39
    dist, idx = topk_search(query, gallery, 10)
    return gallery, query, dist.numpy(), idx.numpy()


def recall(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(a, b)) / want.shape[1] for a, b in zip(got, want)]))


@pytest.mark.parametrize("kind, params, floor", [
    ("flat", {}, 1.0),
    ("ivf", {"nlist": 32, "nprobe": 32}, 1.0),  # every list probed: exact
    ("ivf", {"nlist": 32, "nprobe": 4}, 0.9),
    ("ivfpq", {"nlist": 16, "nprobe": 8, "m": 8, "nbits": 6}, 0.6),
    ("hnsw", {"M": 8, "ef_construction": 20, "ef_search": 16}, 0.95),
    ("hnsw", {"M": 8, "ef_construction": 20, "ef_search": 16, "codes": "sq8"}, 0.9),  # 8-bit nodes
])
def test_each_kind_against_the_exact_search(data, kind, params, floor):
    gallery, query, want_d, want_i = data
    index = GalleryIndex.build(gallery, kind, params, CONTRACT)
    assert len(index) == len(gallery) and index.contract == {**CONTRACT, "dim": 32}
    dist, idx = index.search(query, 10)
    assert idx.shape == (40, 10) and recall(idx, want_i) >= floor
    if floor == 1.0:  # exact kinds: same neighbours, same 1 - cos distances
        assert np.array_equal(idx[:, 0], want_i[:, 0])
        np.testing.assert_allclose(dist, want_d, atol=1e-5)
    assert np.all(np.diff(dist, axis=1) >= -1e-6)  # nearest first


@pytest.mark.parametrize("codes", ["flat", "sq8"])
def test_refinement_reranks_coarse_codes(data, codes, tmp_path):
    """4-byte PQ codes (8 x 4 bits) cannot order the candidates; re-ranking 8 * k of them with a flat or
    8-bit copy finds what the full-vector ivf with the same lists finds."""
    gallery, query, want_d, want_i = data
    lists = {"nlist": 16, "nprobe": 4}
    coarse = GalleryIndex.build(gallery, "ivfpq", {**lists, "m": 8, "nbits": 4})
    full = GalleryIndex.build(gallery, "ivf", lists)
    refined = GalleryIndex.build(gallery, "ivfpq", {**lists, "m": 8, "nbits": 4, "refine": 8, "refine_codes": codes})
    base, ceiling = recall(coarse.search(query, 10)[1], want_i), recall(full.search(query, 10)[1], want_i)
    dist, idx = refined.search(query, 10)
    assert base < 0.8 and recall(idx, want_i) >= ceiling - 0.02 and ceiling >= 0.9
    np.testing.assert_allclose(dist, 1 - np.sum(query[:, None] / np.linalg.norm(query, axis=1)[:, None, None]
                                                * gallery[idx] / np.linalg.norm(gallery[idx], axis=2, keepdims=True),
                                                axis=2), atol=1e-5 if codes == "flat" else 5e-2)  # sq8: 8-bit copies
    refined.configure(refine=1, nprobe=16)  # search time: k candidates re-ranked, every list probed
    assert refined.index.k_factor == 1 and recall(refined.search(query, 10)[1], want_i) < recall(idx, want_i)
    refined.configure(refine=8)
    refined.save(tmp_path / "r.index")
    loaded = GalleryIndex.load(tmp_path / "r.index")
    assert loaded.params == {**lists, "nprobe": 16, "m": 8, "nbits": 4, "spherical": 0, "refine": 8,
                             "refine_codes": codes}
    assert np.array_equal(loaded.search(query, 10)[1], refined.search(query, 10)[1])


@pytest.mark.parametrize("kind, params, search, message", [
    ("ivf", {"nlist": 8, "nprobe": 4}, {"refine": 2}, "'refine' needs a refinement stage; this index was built"),
    ("hnsw", {"refine": 2}, {"refine": 0}, "'refine' must be >= 1"),
    ("ivf", {"nlist": 8, "nprobe": 4}, {"nprobe": 9}, "'nprobe' \\(9\\) exceeds nlist \\(8\\)"),
    ("ivf", {"nlist": 8, "nprobe": 4}, {"nlist": 4}, "'nlist' cannot change at search time"),
    ("hnsw", {}, {"nprobe": 4}, "'nprobe' does not apply to 'hnsw'"),
    ("hnsw", {}, {"ef_search": 0}, "'ef_search' must be in \\[1, 65536\\], got 0"),
])
def test_search_time_parameters_are_checked(data, kind, params, search, message):
    index = GalleryIndex.build(data[0][:400], kind, {"M": 4, **params} if kind == "hnsw" else params)
    before = dict(index.params)
    with pytest.raises(GalleryIndexError, match=message):
        index.configure(**search)
    assert index.params == before


def test_save_load_and_add(data, tmp_path):
    gallery, query, _, want_i = data
    paths = [f"img/{i}.jpg" for i in range(len(gallery))]
    pids = np.arange(len(gallery)) % 200
    half = GalleryIndex.build(gallery[:1500], "ivf", {"nlist": 16, "nprobe": 16}, CONTRACT, paths[:1500],
                              pids[:1500], pids[:1500] % 6)
    half.save(tmp_path / "g.index")
    loaded = GalleryIndex.load(tmp_path / "g.index")
    assert loaded.kind == "ivf" and loaded.params == {"nlist": 16, "nprobe": 16, "spherical": 0, "refine": 0}
    assert loaded.paths == paths[:1500]
    assert np.array_equal(loaded.search(query, 5)[1], half.search(query, 5)[1])
    loaded.add(gallery[1500:], paths[1500:], pids[1500:], pids[1500:] % 6)
    loaded.save(tmp_path / "g.index")
    full = GalleryIndex.load(tmp_path / "g.index")
    assert len(full) == 3000 and full.paths == paths and np.array_equal(full.pids, pids)
    assert np.array_equal(full.camids, pids % 6)
    assert recall(full.search(query, 10)[1], want_i) == 1.0  # all lists probed: the exact result
    with pytest.raises(GalleryIndexError, match="index holds pids/camids and these features do not"):
        full.add(gallery[:3], paths[:3])
    with pytest.raises(GalleryIndexError, match="features have 31 dimensions, the index holds 32"):
        full.add(gallery[:3, :31], paths[:3], pids[:3], pids[:3])
    with pytest.raises(GalleryIndexError, match="3 feature rows but 3 paths, 2 pids"):
        full.add(gallery[:3], paths[:3], pids[:2], pids[:3])
    with pytest.raises(GalleryIndexError, match="feature row 1 holds NaN or infinite values"):
        full.add(np.stack([gallery[0], gallery[1] * np.inf]), paths[:2], pids[:2], pids[:2])
    assert len(full) == 3000 and len(full.paths) == 3000  # nothing added by the refused calls
    (tmp_path / "bad.index").write_bytes(b"not a zip")
    with pytest.raises(GalleryIndexError, match="not an index file written by tools/index.py"):
        GalleryIndex.load(tmp_path / "bad.index")


def test_hnsw_with_8_bit_codes(data, tmp_path):
    """codes=sq8: the graph's nodes hold D bytes instead of 4 D; distances within 8-bit rounding of the
    exact ones; saved, loaded and added to like the float graph."""
    gallery, query, want_d, want_i = data
    params = {"M": 8, "ef_construction": 40, "ef_search": 64}
    small = GalleryIndex.build(gallery[:2000], "hnsw", {**params, "codes": "sq8"}, CONTRACT)
    full = GalleryIndex.build(gallery, "hnsw", params, CONTRACT)
    assert type(small.index).__name__ == "IndexHNSWSQ" and small.params["codes"] == "sq8"
    small.save(tmp_path / "sq.index")
    loaded = GalleryIndex.load(tmp_path / "sq.index")
    loaded.add(gallery[2000:], [str(i) for i in range(2000, 3000)])
    assert loaded.params == {**params, "codes": "sq8", "refine": 0} and len(loaded) == 3000
    dist, idx = loaded.search(query, 10)
    assert recall(idx, want_i) >= 0.9
    exact = 1 - np.einsum("qd,qkd->qk", query / np.linalg.norm(query, axis=1, keepdims=True),
                          (gallery / np.linalg.norm(gallery, axis=1, keepdims=True))[idx])
    # 8-bit codes: approximate, not wrong (their ranges come from the first 2000 rows; a later row
    # outside them is clipped, here by up to 0.02)
    np.testing.assert_allclose(dist, exact, atol=0.04)
    per_row = {name: i.nbytes() / len(i) for name, i in (("sq8", loaded), ("flat", full))}
    assert per_row["flat"] - per_row["sq8"] > 0.7 * 3 * 32  # 4 D -> D bytes a vector (plus the same links)


def test_another_models_features_are_refused(data):
    index = GalleryIndex.build(data[0][:500], "flat", {}, CONTRACT)
    index.check({**CONTRACT, "dim": 32})
    for key, value in [("weights", "x" * 16), ("config", "y" * 16), ("dim", 64)]:
        with pytest.raises(GalleryIndexError, match=f"built from another model's features .*{value}"):
            index.check({**CONTRACT, "dim": 32, key: value}, "--index g.index")


@pytest.mark.parametrize("kind, params, message", [
    ("ivf", {"nprobe": 64, "nlist": 32}, "'nprobe' \\(64\\) exceeds nlist \\(32\\)"),
    ("ivf", {"nlist": 5000}, "'nlist' \\(5000\\) exceeds the 3000 gallery rows"),
    ("ivfpq", {"m": 5}, "'m' \\(5\\) must divide the feature dimension 32"),
    ("ivfpq", {"nbits": 17}, "'nbits' must be in \\[1, 16\\], got 17"),
    ("hnsw", {"nlist": 8}, "'nlist' does not apply to 'hnsw'"),
    ("hnsw", {"M": 1}, "'M' must be in \\[2, 256\\], got 1"),
    ("ivf", {"nprobe": 2.5}, "'nprobe' must be an integer"),
    ("lsh", {}, "unknown index kind 'lsh'"),
    ("ivf", {"refine_codes": "sq8"}, "'refine_codes' needs a refinement stage: set refine >= 1"),
    ("ivfpq", {"refine": 2, "refine_codes": "pq"}, "'refine_codes' must be one of flat, sq8, got 'pq'"),
    ("ivf", {"spherical": 2}, "'spherical' must be in \\[0, 1\\], got 2"),
    ("hnsw", {"codes": "pq"}, "'codes' must be one of flat, sq8, got 'pq'"),
    ("ivfpq", {"codes": "sq8"}, "'codes' does not apply to 'ivfpq'"),
    ("flat", {"refine": 2}, "'refine' does not apply to 'flat'"),
])
def test_parameters_are_checked(kind, params, message):
    assert resolve_params("ivfpq", {}, 3000, 32) == {"nlist": 76, "nprobe": 16, "m": 4, "nbits": 8, "spherical": 0,
                                                     "refine": 0}
    assert resolve_params("hnsw", {"refine": 3}, 3000, 32)["refine_codes"] == "flat"
    assert resolve_params("ivfpq", {}, 10**6, 512)["m"] == 64 and resolve_params("ivf", {}, 10**6, 512)["nlist"] == 4000
    with pytest.raises(GalleryIndexError, match=message):
        resolve_params(kind, params, 3000, 32)


def test_missing_faiss_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss raises ImportError
    with pytest.raises(FaissMissingError, match=r"pip install 'reid\[faiss\]'"):
        import_faiss()
    with pytest.raises(FaissMissingError, match=r"pip install 'reid\[faiss\]'"):
        GalleryIndex.build(np.zeros((4, 8), np.float32), "flat")


def tool(name: str, monkeypatch, *args: str) -> int:
    module = runpy.run_path(str(ROOT / "tools" / f"{name}.py"), run_name="tool")
    monkeypatch.setattr(sys, "argv", [name, *args])
    return module["main"]()


def test_index_and_search_tools(monkeypatch, tmp_path, capsys):
    overrides = tiny_overrides(tmp_path)
    ck = save_tiny_checkpoint(tmp_path / "a.pth", None, overrides)
    other = save_tiny_checkpoint(tmp_path / "b.pth", None, overrides, seed=1)
    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (64, 32, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    index = tmp_path / "g.index"
    assert tool("extract", monkeypatch, "--checkpoint", str(ck), "--images", str(tmp_path / "imgs"),
                "--out", str(tmp_path / "g.npz")) == 0
    assert tool("index", monkeypatch, "--features", str(tmp_path / "g.npz"), "--out", str(index), "--index", "hnsw",
                "--hnsw-m", "4") == 0
    assert tool("index", monkeypatch, "--checkpoint", str(ck), "--images", str(tmp_path / "imgs"),
                "--add", str(index)) == 0
    assert len(GalleryIndex.load(index)) == 12
    query = str(tmp_path / "imgs" / "3.png")
    for source, out in [("--index", "si"), ("--gallery", "sg")]:
        target = index if source == "--index" else tmp_path / "g.npz"
        assert tool("search", monkeypatch, "--checkpoint", str(ck), "--query", query, source, str(target),
                    "--topk", "2", "--out", str(tmp_path / out)) == 0
    rows = {out: list(csv.DictReader(open(tmp_path / out / "search.csv"))) for out in ("si", "sg")}
    assert rows["si"][0]["gallery"] == rows["sg"][0]["gallery"] == query  # the image itself, twice indexed
    assert float(rows["si"][0]["distance"]) < 1e-5 and rows["si"][1]["gallery"] == query
    assert tool("search", monkeypatch, "--checkpoint", str(ck), "--query", query, "--index", str(index),
                "--ef-search", "2", "--topk", "2", "--out", str(tmp_path / "se")) == 0
    refined = tmp_path / "r.index"
    assert tool("index", monkeypatch, "--features", str(tmp_path / "g.npz"), "--out", str(refined), "--index", "ivf",
                "--nlist", "2", "--nprobe", "1", "--spherical", "--refine", "2", "--refine-codes", "sq8") == 0
    assert GalleryIndex.load(refined).params == {"nlist": 2, "nprobe": 1, "spherical": 1, "refine": 2,
                                                 "refine_codes": "sq8"}
    assert tool("search", monkeypatch, "--checkpoint", str(ck), "--query", query, "--index", str(refined),
                "--nprobe", "2", "--refine", "3", "--topk", "2", "--out", str(tmp_path / "sr")) == 0
    found = list(csv.DictReader(open(tmp_path / "sr" / "search.csv")))
    assert found[0]["gallery"] == query and float(found[0]["distance"]) < 0.05  # sq8 distances: approximate
    with pytest.raises(UserError, match="--refine needs a refinement stage"):
        tool("search", monkeypatch, "--checkpoint", str(ck), "--query", query, "--index", str(index), "--refine", "2")
    with pytest.raises(UserError, match="--nprobe does not apply to 'hnsw'"):
        tool("search", monkeypatch, "--checkpoint", str(ck), "--query", query, "--index", str(index), "--nprobe", "2")
    with pytest.raises(UserError, match="--nprobe applies only with --index"):
        tool("search", monkeypatch, "--checkpoint", str(ck), "--query", query, "--gallery", str(tmp_path / "g.npz"),
             "--nprobe", "2")
    with pytest.raises(UserError, match="built from another model's features"):
        tool("search", monkeypatch, "--checkpoint", str(other), "--query", query, "--index", str(index))
    with pytest.raises(UserError, match="--nlist does not apply to --index hnsw"):
        tool("index", monkeypatch, "--features", str(tmp_path / "g.npz"), "--out", str(index), "--index", "hnsw",
             "--nlist", "4")
    with pytest.raises(UserError, match="--nprobe .* exceeds nlist"):
        tool("index", monkeypatch, "--features", str(tmp_path / "g.npz"), "--out", str(index), "--index", "ivf",
             "--nlist", "1", "--nprobe", "2")
    with pytest.raises(UserError, match="--refine-codes needs a refinement stage"):
        tool("index", monkeypatch, "--features", str(tmp_path / "g.npz"), "--out", str(index), "--index", "ivf",
             "--refine-codes", "sq8")
    assert tool("index", monkeypatch, "--features", str(tmp_path / "g.npz"), "--out", str(tmp_path / "q.index"),
                "--index", "hnsw", "--hnsw-m", "4", "--hnsw-codes", "sq8") == 0
    assert GalleryIndex.load(tmp_path / "q.index").params["codes"] == "sq8"
    with pytest.raises(UserError, match="--hnsw-codes does not apply to --index ivf"):
        tool("index", monkeypatch, "--features", str(tmp_path / "g.npz"), "--out", str(index), "--index", "ivf",
             "--hnsw-codes", "sq8")
    with pytest.raises(UserError, match="--spherical does not apply to --index hnsw"):
        tool("index", monkeypatch, "--features", str(tmp_path / "g.npz"), "--out", str(index), "--index", "hnsw",
             "--spherical")
    with pytest.raises(UserError, match="--index does not apply with --add"):
        tool("index", monkeypatch, "--features", str(tmp_path / "g.npz"), "--add", str(index), "--index", "ivf")
