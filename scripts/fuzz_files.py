#!/usr/bin/env python
"""The slower, seeded tier of the fuzzer (issue 23, item 6): data folders and checkpoint files that
lie, through the real loaders, in process.

    python scripts/fuzz_files.py [--seed 0] [--work DIR] [--only data|checkpoint]

Data folders: a small Market-1501 layout, then one mutation per case (file names: non-ASCII digits,
identities and cameras out of range, missing fields; image files: truncated, 0 bytes, text, a PNG
header claiming 20000x20000, 1x1, 16-bit; layout: an empty or missing split, a query identity
absent from the gallery), read by ``build_dataset`` and decoded by ``build_test_images`` (the image
store). Checkpoints: one real checkpoint written by ``tools/train.py`` (1 iteration, ResNet-18,
synthetic data), then one mutation per case (truncated, 0 bytes, random bytes, a folder, keys
removed or renamed, tensors of another shape or dtype, NaN weights, a pickled Python object, a
config that is not a mapping or names another model), loaded by ``reid.inference.FeatureExtractor``
and run on two images.

Each case ends as in reid.testing.fuzz: ``clear`` (one-line UserError), ``accepted``, ``traceback``
(any other exception: printed, the bug list) or ``hang`` (over the per-case bound). Prints the
counts per family and outcome, and every traceback. Exit 1 when a case is a traceback or a hang.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import random
import shutil
import struct
import sys
import tempfile
import traceback
import zlib
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from reid.registry import UserError  # noqa: E402
from reid.testing.fuzz import _time_bound, _Timeout  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MARKET = "Market-1501-v15.09.15"
BOUND_S = 60.0


# ------------------------------------------------------------------------------------ outcomes


def outcome(fn: Callable[[], Any]) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        with _time_bound(BOUND_S), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            fn()
    except _Timeout:
        return "hang", f"over {BOUND_S} s"
    except UserError as exc:
        text = str(exc)
        return ("clear" if "\n" not in text else "multiline"), text.splitlines()[0][:200] if text else ""
    except SystemExit as exc:
        return ("clear" if exc.code == 2 else "traceback"), err.getvalue().strip()[-200:]
    except Exception:  # noqa: BLE001 - every other exception is a finding
        return "traceback", traceback.format_exc(limit=6)
    return "accepted", ""


# ----------------------------------------------------------------------------------- data folders


def write_market(root: Path, rng: random.Random) -> None:
    """4 identities x 2 cameras: 2 train images each, 1 query and 2 gallery images per identity."""
    base = root / MARKET
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        (base / split).mkdir(parents=True, exist_ok=True)
    for pid in range(1, 5):
        for cam in (1, 2):
            for k in range(2):
                colour = [rng.randrange(256) for _ in range(3)]
                image = Image.new("RGB", (32, 64), tuple(colour))
                image.save(base / "bounding_box_train" / f"{pid:04d}_c{cam}s1_{k:06d}_01.jpg")
                image.save(base / "bounding_box_test" / f"{pid + 10:04d}_c{cam}s1_{k:06d}_01.jpg")
        Image.new("RGB", (32, 64), (pid * 40, 0, 0)).save(base / "query" / f"{pid + 10:04d}_c1s1_000099_01.jpg")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (one compressed row of data follows)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * (3 * width + 1)))
            + _chunk(b"IEND", b""))


def _pick(base: Path, split: str, rng: random.Random) -> Path:
    files = sorted((base / split).glob("*.jpg"))
    return files[rng.randrange(len(files))]


def _rename(path: Path, name: str) -> None:
    path.rename(path.with_name(name))


DATA_MUTATIONS: dict[str, Callable[[Path, random.Random], None]] = {
    "name: non-ASCII digits": lambda b, r: _rename(_pick(b, "query", r), "\u0661\u0662_c1s1_000001_01.jpg"),
    "name: huge identity": lambda b, r: _rename(_pick(b, "bounding_box_test", r),
                                                "99999999999999999999_c1s1_000001_01.jpg"),
    "name: camera 0": lambda b, r: _rename(_pick(b, "query", r), "0011_c0s1_000001_01.jpg"),
    "name: camera 99": lambda b, r: _rename(_pick(b, "bounding_box_train", r), "0001_c99s1_000001_01.jpg"),
    "name: no camera": lambda b, r: _rename(_pick(b, "bounding_box_train", r), "0001_s1_000001_01.jpg"),
    "name: upper-case extension": lambda b, r: _rename(_pick(b, "bounding_box_test", r), "0011_c2s1_000077_01.JPG"),
    "name: a folder named like an image": lambda b, r: (b / "query" / "0012_c2s1_000001_01.jpg").mkdir(),
    "image: truncated": lambda b, r: (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]))(
        _pick(b, "query", r)),
    "image: 0 bytes": lambda b, r: _pick(b, "bounding_box_test", r).write_bytes(b""),
    "image: text": lambda b, r: _pick(b, "bounding_box_train", r).write_text("not an image\n"),
    "image: 20000x20000 PNG header": lambda b, r: _pick(b, "query", r).write_bytes(_png_header(20000, 20000)),
    "image: 1x1": lambda b, r: Image.new("RGB", (1, 1)).save(_pick(b, "bounding_box_test", r), format="JPEG"),
    "image: 16-bit grey": lambda b, r: Image.fromarray(np.full((64, 32), 40000, np.uint16)).save(
        _pick(b, "query", r), format="PNG"),
    "layout: empty query": lambda b, r: [p.unlink() for p in (b / "query").glob("*.jpg")],
    "layout: no gallery folder": lambda b, r: shutil.rmtree(b / "bounding_box_test"),
    "layout: query identity without gallery": lambda b, r: _rename(_pick(b, "query", r), "0777_c1s1_000001_01.jpg"),
    "layout: every query from the gallery's camera": lambda b, r: [
        p.rename(p.with_name(p.name.replace("_c1", "_c2"))) for p in (b / "query").glob("*.jpg")
        if not (b / "query" / p.name.replace("_c1", "_c2")).exists()],
}


def data_case(work: Path, name: str, seed: int) -> tuple[str, str]:
    from reid.config import load_config
    from reid.data.build import build_dataset, build_test_images

    rng = random.Random(f"{seed}:{name}")
    root = work / f"data_{abs(hash(name)) % 10**8}"
    shutil.rmtree(root, ignore_errors=True)
    write_market(root, rng)
    DATA_MUTATIONS[name](root / MARKET, rng)

    def run() -> None:
        cfg = load_config(None, [f"dataset={{name: market1501, root: {root}}}", f"data.cache_dir={root / 'cache'}",
                                 "input.size=[32,16]", "data.workers=1"])
        dataset = build_dataset(cfg, verbose=False)
        build_test_images(cfg, list(dataset.query) + list(dataset.gallery))
        build_test_images(cfg, list(dataset.train))

    return outcome(run)


# ------------------------------------------------------------------------------------ checkpoints


def train_checkpoint(work: Path) -> Path:
    import runpy

    run = work / "run"
    argv = sys.argv
    sys.argv = ["train.py", "--config", str(ROOT / "configs" / "quickstart.yaml"), f"output_dir={run}",
                f"data.cache_dir={work / 'cache'}", f"dataset.root={work / 'datasets'}", "train.epochs=1",
                "train.iters_per_epoch=1", "input.size=[32,16]", "model.backbone.name=resnet18",
                "sampler.num_ids=2", "sampler.num_instances=2", "data.workers=1", "train.eval_period=0",
                "dataset.num_ids=4", "dataset.num_test_ids=4", "dataset.images_per_id=4", "train.amp=off"]
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            runpy.run_path(str(ROOT / "tools" / "train.py"), run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise RuntimeError(f"tools/train.py failed with exit {exc.code}") from None
    finally:
        sys.argv = argv
    return run / "checkpoints" / "last.pth"


def _state(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def _save(path: Path, state: Any) -> None:
    import torch

    torch.save(state, path)


def _edit_model(fn: Callable[[dict], None]) -> Callable[[Path, Path, random.Random], None]:
    def mutate(src: Path, dst: Path, rng: random.Random) -> None:
        state = _state(src)
        fn(state["model"])
        _save(dst, state)
    return mutate


def _first_key(weights: dict, ndim: int = 2) -> str:
    return next(k for k, v in weights.items() if hasattr(v, "ndim") and v.ndim >= ndim)


class _Payload:
    """A Python object: unpickling it means running reid's code path for a GLOBAL."""


def _config(value: Any) -> Callable[[Path, Path, random.Random], None]:
    def mutate(src: Path, dst: Path, rng: random.Random) -> None:
        state = _state(src)
        state["config"] = value(state.get("config")) if callable(value) else value
        _save(dst, state)
    return mutate


CHECKPOINT_MUTATIONS: dict[str, Callable[[Path, Path, random.Random], None]] = {
    "bytes: truncated at a random point": lambda s, d, r: d.write_bytes(
        (lambda b: b[: r.randrange(1, len(b) - 1)])(s.read_bytes())),
    "bytes: 0 bytes": lambda s, d, r: d.write_bytes(b""),
    "bytes: random": lambda s, d, r: d.write_bytes(bytes(r.randrange(256) for _ in range(4096))),
    "bytes: a zip with one entry flipped": lambda s, d, r: d.write_bytes(
        (lambda b, i: b[:i] + bytes([b[i] ^ 0xFF]) + b[i + 1:])(s.read_bytes(), r.randrange(100, 2000))),
    "path: a folder": lambda s, d, r: d.mkdir(),
    "keys: model removed": lambda s, d, r: _save(d, {k: v for k, v in _state(s).items() if k != "model"}),
    "keys: not a dict": lambda s, d, r: _save(d, [1, 2, 3]),
    "keys: a weight renamed": _edit_model(lambda w: w.__setitem__("renamed.weight", w.pop(_first_key(w)))),
    "keys: a weight removed": _edit_model(lambda w: w.pop(_first_key(w))),
    "shape: a weight transposed": _edit_model(lambda w: w.__setitem__(_first_key(w), w[_first_key(w)].transpose(0, 1))),
    "shape: classifier of 3 identities": _edit_model(lambda w: w.__setitem__(
        [k for k in w if "classifier" in k][0], w[[k for k in w if "classifier" in k][0]][:3])),
    "dtype: a weight as int64": _edit_model(lambda w: w.__setitem__(_first_key(w), w[_first_key(w)].long())),
    "values: NaN weights": _edit_model(lambda w: [v.fill_(float("nan")) for v in w.values() if v.is_floating_point()]),
    "pickle: a Python object": lambda s, d, r: _save(d, {**_state(s), "extra": _Payload()}),
    "config: not a mapping": _config("abc"),
    "config: another model": _config(lambda c: {**c, "model": {"name": "laganet"}}),
    "config: unknown key": _config(lambda c: {**c, "tarin": {"epochs": 1}}),
    "config: an input size of 1x1": _config(lambda c: {**c, "input": {**c["input"], "size": [1, 1]}}),
}


def checkpoint_case(work: Path, source: Path, name: str, seed: int) -> tuple[str, str]:
    from reid.inference import FeatureExtractor

    rng = random.Random(f"{seed}:{name}")
    path = work / f"ck_{abs(hash(name)) % 10**8}.pth"
    if path.is_dir():
        path.rmdir()
    path.unlink(missing_ok=True)
    CHECKPOINT_MUTATIONS[name](source, path, rng)
    images = [np.full((64, 32, 3), 90, np.uint8), np.full((64, 32, 3), 200, np.uint8)]

    def run() -> None:
        features = FeatureExtractor(path)(images)
        if not np.isfinite(np.asarray(features)).all():
            raise AssertionError("non-finite features returned without an error")

    return outcome(run)


# ------------------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", help="scratch folder (default: a temporary one, removed)")
    parser.add_argument("--only", choices=("data", "checkpoint"))
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="reid_fuzz_files_"))
    work.mkdir(parents=True, exist_ok=True)
    results: list[tuple[str, str, str, str]] = []
    try:
        if args.only in (None, "data"):
            for name in DATA_MUTATIONS:
                results.append(("data", name, *data_case(work, name, args.seed)))
        if args.only in (None, "checkpoint"):
            source = train_checkpoint(work)
            for name in CHECKPOINT_MUTATIONS:
                results.append(("checkpoint", name, *checkpoint_case(work, source, name, args.seed)))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    table: dict[str, dict[str, int]] = {}
    for family, _, result, _ in results:
        table.setdefault(family, {}).setdefault(result, 0)
        table[family][result] += 1
    for family, row in table.items():
        print(f"{family:12s} {sum(row.values())} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(row.items())))
    for family, name, result, detail in results:
        line = detail if result == "traceback" else detail.splitlines()[0] if detail else ""
        print(f"[{result}] {family}: {name}" + (f"\n{line}" if result == "traceback" else f": {line}"))
    return int(any(r[2] in ("traceback", "hang", "multiline") for r in results))


if __name__ == "__main__":
    sys.exit(main())
