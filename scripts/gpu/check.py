#!/usr/bin/env python
"""The GPU check: every CUDA path of reid and the real-image table, one part after another, each
part a subprocess with its own time limit, everything written under ``$OUT`` (default ``gpu_check/``).

    bash scripts/gpu_check.sh [--dry-run] [--parts env tests ...] [--budget 540] [--out DIR]

Parts, in order (``--parts`` runs a subset, e.g. to rerun what failed):

    env       GPU name and memory, driver, torch / CUDA / cuDNN versions
    tests     the tests marked ``cuda_capable``, run with REID_TEST_DEVICE=cuda
    steps     one training step and one evaluation pass per network family, fp32 / bf16 /
              bf16 + channels_last (+ torch.compile for LAGA-Net 384x128 bf16), beside the memory
              scripts/bench_memory.py's count predicts
    dist      torchrun --nproc_per_node=1 (NCCL) for one short epoch: DDP, SyncBN, gathered losses,
              shared evaluation
    data_eval scripts/bench_data.py --device cuda; the evaluator's CUDA path at Market-1501 and
              MSMT17 size against the CPU result
    accuracy  the real-image table: every family with the ImageNet MobileNetV2 trunk on Market-1501
              mini at 256x128 (BoT-MobileNetV2 full config first, the others at --family-epochs)
    peer      torchreid's side of scripts/bench_accuracy.py --peer for that BoT-MobileNetV2 run

``--dry-run`` runs every part on the CPU at tiny sizes (same files, same summary). Writes
``summary.md`` (one section per part: exit code, wall time, its table, the last lines of its log),
``logs/<part>.log`` and ``parts/<part>.md``; the summary is rewritten after every part.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

#: Where scripts/gpu_prepare.sh puts what travels to the GPU machine (git-ignored).
CARRY = ROOT / ".gpu"
#: Where the packed Market-1501 mini set is unpacked: ignored and not carried (.gpu/ stays small).
UNPACKED = ROOT / ".cache" / "gpu_check"
TAIL_LINES = 15
#: The dry run's trunk: every family builds on it, and it is cheap on a shared CPU.
TINY_TRUNK = "name: mobilenetv2, last_stride: 1, pretrained: false"


@dataclass
class Part:
    """One part: its commands (run in order by bash; the first failure ends the part), its time
    limit in seconds, extra environment, and the files holding its tables for the summary."""

    name: str
    title: str
    commands: list[list[str] | str]  # argv lists, or a raw bash line
    timeout: int
    env: dict[str, str] = field(default_factory=dict)
    tables: list[str] = field(default_factory=list)  # files with the part's tables: .md, .xml (JUnit), .txt


def unpack_market_mini() -> None:
    """Unpack ``.gpu/market1501-mini.zip`` (scripts/gpu_prepare.sh packs the 12,936 JPEGs in one file:
    31.7 MiB, against 52 MiB of 4 KiB blocks as files) into ``.cache/gpu_check/`` once."""
    packed = CARRY / "market1501-mini.zip"
    if packed.is_file() and not (UNPACKED / "market1501-mini" / "Market-1501-v15.09.15").is_dir():
        import zipfile

        with zipfile.ZipFile(packed) as z:
            z.extractall(UNPACKED)
        print(f"=> unpacked {packed}", flush=True)


def market_mini_root() -> Path | None:
    """The real Market-1501 mini set: the carried copy first (unpacked), then $REID_SHARED_DATA, ../shared/data."""
    candidates = [UNPACKED / "market1501-mini", ROOT.parent / "shared" / "data" / "market1501-mini"]
    if os.environ.get("REID_SHARED_DATA"):
        candidates.insert(1, Path(os.environ["REID_SHARED_DATA"]) / "market1501-mini")
    for path in candidates:
        if (path / "Market-1501-v15.09.15" / "bounding_box_train").is_dir():
            return path
    return None


def parts(args: argparse.Namespace, out: Path) -> list[Part]:
    """Every part's commands for a GPU run or a dry run (``args.dry_run``)."""
    py, dry = sys.executable, args.dry_run
    md = out / "parts"
    device = "cpu" if dry else "cuda"
    data = market_mini_root()
    data_args = ["--data-root", str(data)] if data else []
    cache = str(out / "cache")
    tests = [py, "-m", "pytest", "-q", "-m", "cuda_capable", "-p", "no:cacheprovider",
             f"--junitxml={md / 'tests.xml'}", "tests"]
    if dry:  # collect every marked test; run the quickest few
        tests += ["-k", "test_cuda_path_equals_cpu or test_all_off_equals_plain_normalisation"]
    steps = [py, "scripts/gpu/steps.py", "--device", device, "--md", str(md / "steps.md"),
             "--profile", "bot" if dry else "laganet"]
    if dry:
        steps += ["--models", "bot", "--size", "64x32", "--ids", "2", "--steps", "1", "--warmup", "1",
                  "--modes", "fp32", "--override", f"model.backbone={{{TINY_TRUNK}}}", "test.batch_size=4"]
    dist = [py, "scripts/gpu/dist_epoch.py", "--device", device, "--out", str(out / "dist"),
            "--md", str(md / "dist.md")] + (["--tiny"] if dry else [])
    bench_data = [py, "scripts/bench_data.py", "--device", device, "--cache-dir", cache]
    bench_data += ["--root", str(data)] if data else []
    bench_data += ["--sizes", "64x32", "--batches", "2", "--repeats", "1", "--workers", "1"] if dry else \
        ["--workers", "8"]
    bench_data = shlex.join(bench_data) + " | tee " + shlex.quote(str(md / "bench_data.txt"))
    eval_cuda = [py, "scripts/gpu/eval_cuda.py", "--md", str(md / "data_eval.md")] + \
        (["--dry-run"] if dry else [])
    table = [py, "scripts/gpu/real_table.py", "--out-dir", str(out / "accuracy"), "--cache-dir", cache,
             "--md", str(md / "accuracy.md"), *data_args]
    if dry:
        table += ["--dry-run"]
    else:
        table += ["--family-epochs", str(args.family_epochs)]
    peer = table[:]
    peer[peer.index("--md") + 1] = str(md / "peer.md")
    peer += ["--peer"]
    # time limits, (GPU, dry run) seconds; GPU: 540 in all. The dry run's are generous: a shared CPU is slow
    limits = {"env": (15, 30), "tests": (65, 60), "steps": (200, 90), "dist": (40, 120), "data_eval": (50, 40),
              "accuracy": (100, 120), "peer": (70, 30)}
    timeout = {k: v[1 if dry else 0] for k, v in limits.items()}
    return [
        Part("env", "Environment", [[py, "scripts/gpu/env_info.py", "--md", str(md / "env.md")]],
             timeout["env"], tables=[str(md / "env.md")]),
        Part("tests", "Tests marked cuda_capable, on " + device, [tests], timeout["tests"],
             env={"REID_TEST_DEVICE": device}, tables=[str(md / "tests.xml")]),
        Part("steps", "One training step and one evaluation per network", [steps], timeout["steps"],
             tables=[str(md / "steps.md")]),
        Part("dist", "torchrun --nproc_per_node=1, one short epoch", [dist], timeout["dist"],
             tables=[str(md / "dist.md")]),
        Part("data_eval", "Data path on the device; evaluator on " + device, [bench_data, eval_cuda],
             timeout["data_eval"], tables=[str(md / "bench_data.txt"), str(md / "data_eval.md")]),
        Part("accuracy", "Real-image table (Market-1501 mini, ImageNet MobileNetV2 trunk)", [table],
             timeout["accuracy"], tables=[str(md / "accuracy.md")]),
        Part("peer", "torchreid's BoT-MobileNetV2 at the same budget", [peer], timeout["peer"],
             tables=[str(md / "peer.md")]),
    ]


def junit_table(path: Path) -> str:
    """pytest's JUnit XML -> a Markdown table: counts, then each failed or errored test and its message."""
    import xml.etree.ElementTree as ET

    suite = ET.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    passed = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
    lines = ["| tests | passed | failed | errors | skipped | seconds |", "| ---: | ---: | ---: | ---: | ---: | ---: |",
             f"| {n['tests']} | {passed} | {n['failures']} | {n['errors']} | {n['skipped']} | "
             f"{float(suite.get('time', 0)):.1f} |"]
    bad = [(case, child) for case in suite.iter("testcase") for child in case
           if child.tag in ("failure", "error")]
    if bad:
        lines += ["", "| failed test | message |", "| --- | --- |"]
        for case, child in bad:
            message = (child.get("message") or "").replace("|", "/").replace("\n", " ")[:200]
            lines.append(f"| {case.get('classname')}::{case.get('name')} | {message} |")
    return "\n".join(lines)


def log_tables(text: str) -> str:
    """The Markdown table lines of a log (rows starting with '|'), for parts that print one."""
    return "\n".join(line for line in text.splitlines() if line.lstrip().startswith("|"))


def run_part(part: Part, out: Path, scale: float) -> dict:
    """Run ``part``'s commands under ``timeout`` (one limit for all of them); returns its record."""
    log = out / "logs" / f"{part.name}.log"
    limit = max(1, int(part.timeout * scale))
    script = "set -o pipefail; " + " && ".join(c if isinstance(c, str) else shlex.join(c) for c in part.commands)
    env = {**os.environ, **part.env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                                  os.environ.get("PYTHONPATH")]))}
    for name in part.tables:  # a rerun's tables are its own
        Path(name).unlink(missing_ok=True)
    started = time.strftime("%H:%M:%S")
    start = time.perf_counter()
    with open(log, "w") as f:
        f.write(f"$ {script}\n\n")
        f.flush()
        # timeout -k: a part still running 15 s after SIGTERM (time to stop its children) is killed
        rc = subprocess.run(["timeout", "-k", "15", str(limit), "bash", "-c", script], cwd=ROOT, env=env,
                            stdout=f, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    text = log.read_text(errors="replace")
    tables = []
    for name in part.tables:
        path = Path(name)
        if not path.is_file():
            continue
        if path.suffix == ".xml":
            tables.append(junit_table(path))
        elif path.suffix == ".txt":
            tables.append("```\n" + "\n".join(path.read_text().rstrip().splitlines()[-10:]) + "\n```")
        else:
            tables.append(path.read_text().strip())
    table = "\n\n".join(tables) or ("" if part.name == "tests" else log_tables(text))
    return {"part": part, "rc": rc, "wall": wall, "limit": limit, "started": started, "table": table.strip(),
            "tail": "\n".join([line for line in text.rstrip().splitlines()
                                if not line.startswith("USDT:")][-TAIL_LINES:])}  # the profiler's start/stop


def summary(records: list[dict], header: str) -> str:
    lines = [header, "", "| part | exit code | wall s | limit s | started |", "| --- | ---: | ---: | ---: | --- |"]
    for r in records:
        rc = "timed out (124)" if r["rc"] in (124, 137) else str(r["rc"])
        lines.append(f"| {r['part'].name} | {rc} | {r['wall']:.0f} | {r['limit']} | {r['started']} |")
    for r in records:
        p = r["part"]
        lines += ["", f"## {p.name}: {p.title}", "",
                  f"exit code {r['rc']}, {r['wall']:.0f} s of {r['limit']} s; log: logs/{p.name}.log", ""]
        lines += [r["table"] or "(no table: see the log's last lines)", "", "last lines of the log:", "", "```",
                  r["tail"], "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--dry-run", action="store_true", help="every part on the CPU at tiny sizes")
    ap.add_argument("--parts", nargs="+", metavar="PART", help="run only these parts (default: all, in order)")
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu_check", help="output folder (default $OUT)")
    ap.add_argument("--timeout-scale", type=float, default=1.0, help="multiply every part's time limit")
    ap.add_argument("--family-epochs", type=int, default=1,
                    help="epochs of each family but BoT in the real-image table (BoT: its full config)")
    args = ap.parse_args(argv)
    if args.timeout_scale <= 0:
        ap.error("--timeout-scale must be > 0")
    if args.family_epochs < 1:
        ap.error("--family-epochs must be >= 1")
    out = Path(args.out).resolve()
    if not args.parts or set(args.parts) & {"data_eval", "accuracy", "peer"}:  # the parts that read the images
        unpack_market_mini()
    for sub in ("logs", "parts"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    todo = parts(args, out)
    names = [p.name for p in todo]
    if args.parts:
        unknown = [p for p in args.parts if p not in names]
        if unknown:
            ap.error(f"unknown part(s) {', '.join(unknown)}; parts: {', '.join(names)}")
        todo = [p for p in todo if p.name in args.parts]
    mode = "dry run on the CPU (tiny sizes)" if args.dry_run else "GPU run"
    header = (f"# GPU check: {mode}\n\n{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; "
              f"`{shlex.join(['bash', 'scripts/gpu_check.sh', *(argv if argv is not None else sys.argv[1:])])}`; "
              f"data: {market_mini_root() or 'Market-1501 mini not found'}")
    records: list[dict] = []
    start = time.perf_counter()
    for part in todo:
        print(f"=> part {part.name} (limit {int(part.timeout * args.timeout_scale)} s)", flush=True)
        records.append(run_part(part, out, args.timeout_scale))
        r = records[-1]
        print(f"   exit {r['rc']} after {r['wall']:.0f} s", flush=True)
        (out / "summary.md").write_text(summary(records, header))
    total = time.perf_counter() - start
    (out / "summary.md").write_text(summary(records, header + f"; total wall time {total:.0f} s"))
    failed = [r["part"].name for r in records if r["rc"] != 0]
    print(f"=> {len(records)} parts in {total:.0f} s; failed: {', '.join(failed) or 'none'}; "
          f"wrote {out / 'summary.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
