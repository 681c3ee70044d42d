#!/usr/bin/env python
"""The distributed path in one process: ``torchrun --nproc_per_node=1`` (NCCL on a GPU, gloo on
the CPU) trains BoT for one short epoch on a synthetic set with SyncBN and gathered losses, then
evaluates (the shared evaluation), and checks that the run really went through DDP.

    python scripts/gpu/dist_epoch.py [--device cuda] [--out DIR] [--md dist.md] [--tiny]

Without torchrun's environment the script launches itself under torchrun and reports; under it
(the worker) it builds the trainer, records the process group's backend and world size, whether
the model is DDP-wrapped, the SyncBatchNorm layers and the gathered-loss switch, trains, evaluates
and writes ``DIR/worker.json``. ``--tiny``: a MobileNetV2 trunk at 64x32, 2 iterations (a dry run).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def overrides(args) -> list[str]:
    out = Path(args.out).resolve()
    common = [f"output_dir={out / 'run'}", f"data.cache_dir={out / 'cache'}", f"device={args.device}",
              "dataset.name=synthetic", f"dataset.root={out / 'datasets'}", "dataset.num_test_ids=8",
              "model.backbone.pretrained=false", "train.sync_bn=true", "train.gather_outputs=true",
              "train.eval_before=false", "train.epochs=1", "schedule.warmup_epochs=0"]
    if args.tiny:
        return common + ["dataset.num_ids=8", "dataset.images_per_id=4", "input.size=[64,32]",
                         "sampler.num_ids=2", "sampler.num_instances=2", "train.iters_per_epoch=2",
                         "model.backbone={name: mobilenetv2, last_stride: 1, pretrained: false}", "test.batch_size=32"]
    return common + ["dataset.num_ids=64", "dataset.images_per_id=8", "train.iters_per_epoch=20"]


def worker(args) -> int:
    """Runs under torchrun: the trainer as tools/train.py builds it (reid.engine.distributed)."""
    import torch
    import torch.distributed as dist

    from reid.config import load_config
    from reid.engine import Trainer
    from reid.engine.distributed import init_distributed, world_info
    from reid.engine.gather import GlobalBatchNorm

    (Path(args.out) / f"worker{os.environ.get('RANK', '0')}.pid").write_text(str(os.getpid()))
    cfg = load_config(ROOT / "configs" / "bot" / "market1501.yaml", overrides(args))
    rank, world = init_distributed(cfg.device)
    if dist.is_initialized() and torch.cuda.is_available() and cfg.device in ("auto", "cuda"):
        cfg.device = f"cuda:{world_info()[2]}"
    start = time.perf_counter()
    trainer = Trainer(cfg, rank=rank, world_size=world)
    record = {"backend": dist.get_backend() if dist.is_initialized() else "none", "world_size": world,
              "distributed": trainer.distributed, "ddp": trainer.ddp is not None, "gather": trainer.gather,
              # torch's SyncBatchNorm on CUDA, reid's GlobalBatchNorm elsewhere (reid.engine.gather)
              "sync_bn_layers": sum(isinstance(m, (torch.nn.SyncBatchNorm, GlobalBatchNorm))
                                    for m in trainer.model.modules()),
              "sync_bn_kind": sorted({type(m).__name__ for m in trainer.model.modules()
                                      if isinstance(m, (torch.nn.SyncBatchNorm, GlobalBatchNorm))}),
              "device": str(trainer.device), "batch": int(cfg.sampler.num_ids) * int(cfg.sampler.num_instances),
              "size": list(cfg.input.size), "amp": str(trainer.amp).replace("torch.", "") if trainer.amp else "off"}
    summary = trainer.fit()
    record.update(wall_s=time.perf_counter() - start, final=summary["final"],
                  iterations=min(len(trainer.loader), int(cfg.train.iters_per_epoch) or len(trainer.loader)))
    if rank == 0:
        (Path(args.out) / "worker.json").write_text(json.dumps(record, indent=2))
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def run_torchrun(cmd: list[str], out: Path) -> int:
    """Run torchrun; on SIGTERM (a time limit) stop it and its worker before exiting: torchrun
    stops its workers when it is given time to, and a worker left running would hold the device
    through the parts after this one."""

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    proc = subprocess.Popen(cmd, cwd=ROOT)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        print("=> stopping torchrun and its worker", flush=True)
        proc.terminate()
        try:
            proc.wait(8)
        except subprocess.TimeoutExpired:
            proc.kill()
        for pid_file in out.glob("worker*.pid"):
            with contextlib.suppress(ValueError, OSError):  # gone already, or not ours
                pid = int(pid_file.read_text())
                if "dist_epoch" in Path(f"/proc/{pid}/cmdline").read_text():
                    os.kill(pid, signal.SIGKILL)
        return 124
    finally:
        signal.signal(signal.SIGTERM, previous)


def launcher(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in [out / "worker.json", *out.glob("worker*.pid")]:
        old.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
           str(Path(__file__).resolve()), "--device", args.device, "--out", str(out)]
    cmd += ["--tiny"] if args.tiny else []
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    rc = run_torchrun(cmd, out)
    wall = time.perf_counter() - start
    result = out / "worker.json"
    if rc != 0 or not result.is_file():
        print(f"error: torchrun exited {rc} after {wall:.0f} s" + ("" if result.is_file() else ", no worker.json"))
        return 1
    r = json.loads(result.read_text())
    f = r["final"]
    checks = {"process group": r["backend"] != "none", "DDP-wrapped": r["ddp"], "SyncBN": r["sync_bn_layers"] > 0,
              "gathered losses": r["gather"]}
    table = ["| backend | world | device | amp | size x batch | iterations | DDP | SyncBN layers | gathered losses "
             "| R1 | mAP | trainer s | torchrun s |",
             "| --- | ---: | --- | --- | --- | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: |",
             f"| {r['backend']} | {r['world_size']} | {r['device']} | {r['amp']} | "
             f"{r['size'][0]}x{r['size'][1]} x {r['batch']} | {r['iterations']} | {r['ddp']} | {r['sync_bn_layers']} "
             f"({', '.join(r['sync_bn_kind'])}) | {r['gather']} | {100 * f['rank1']:.1f} | {100 * f['mAP']:.1f} | "
             f"{r['wall_s']:.1f} | {wall:.1f} |"]
    missing = [k for k, ok in checks.items() if not ok]
    if missing:
        table.append(f"\nnot exercised: {', '.join(missing)}")
    print("\n".join(table))
    if args.md:
        Path(args.md).write_text("\n".join(table) + "\n")
    return 1 if missing else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default="gpu_check/dist", help="run folder, synthetic data, worker.json")
    ap.add_argument("--md", help="write the table here too")
    ap.add_argument("--tiny", action="store_true", help="a MobileNetV2 trunk at 64x32, 2 iterations")
    args = ap.parse_args()
    return worker(args) if "TORCHELASTIC_RUN_ID" in os.environ else launcher(args)


if __name__ == "__main__":
    sys.exit(main())
