"""DDP over torchrun (2 gloo processes on CPU) equals one process on the same global batch."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from reid.config import load_config
from reid.engine import Trainer

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2
P = 2  # identities per rank; the single process takes WORLD * P
#: Seconds one torchrun call may take. Most of a call is three interpreters importing torch: on the
#: shared 2-core machine a call took 35-90 s at load average 4-10 and up to 125 s at load 20 (two
#: copies of this test beside a busy loop), so 240 s was within reach of a busier machine. A hang
#: still ends, with every worker's Python stack in the report.
TIMEOUT = 900
#: a parent launched by torchrun must not hand its rendezvous to the job this test launches
LAUNCH_VARS = {"MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
               "GROUP_WORLD_SIZE", "ROLE_RANK", "ROLE_WORLD_SIZE", "TORCHELASTIC_RUN_ID",
               "TORCHELASTIC_USE_AGENT_STORE"}


def overrides(tmp: Path, out: str, num_ids: int, *extra: str) -> list[str]:
    """Tiny run: synthetic set, ResNet-18 BoT at 64x32, SyncBN, no random augmentation (each rank
    draws its own augmentation randomness, so only deterministic inputs are comparable), in float64:
    in float32 a random-init ResNet's early-layer gradients differ by ~0.5% between any two
    summation orders (cancellation), which would hide a real error; in float64 they agree to 1e-12."""
    return [
        f"output_dir={tmp / out}", f"data.cache_dir={tmp / 'cache'}", "device=cpu", "data.workers=1",
        "dataset.name=synthetic", f"dataset.root={tmp / 'datasets'}",
        "dataset.num_ids=16", "dataset.num_test_ids=4", "dataset.images_per_id=8",
        "input.size=[64,32]", f"sampler.num_ids={num_ids}", "sampler.num_instances=4",
        "augment.crop=none", "augment.flip_prob=0", "augment.color_jitter.prob=0", "augment.erasing.prob=0",
        "model.name=bot", "model.backbone={name: resnet18, last_stride: 1, pretrained: false}",
        "optimizer.name=sgd", "optimizer.lr=0.05", "schedule.warmup_epochs=0", "schedule.name=constant",
        "train.amp='off'", "train.dtype=float64", "train.sync_bn=true", "train.eval_before=false", "test.batch_size=64",
        "train.epochs=2", "train.iters_per_epoch=2", *extra,
    ]


def tail(path: Path, chars: int) -> str:
    return path.read_text(errors="replace")[-chars:] if path.is_file() else f"({path} absent)"


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc; empty elsewhere)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def stop(launcher: subprocess.Popen) -> None:
    """End a hung torchrun. Its workers run in sessions of their own, so killing the launcher alone
    would leave them running: each worker gets SIGABRT (faulthandler prints its Python stacks into
    the output), then the launcher, which ends the job; whatever is left after 30 s is killed."""
    for pid in child_pids(launcher.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGABRT)
    try:
        launcher.wait(timeout=30)
    except subprocess.TimeoutExpired:
        for pid in [*child_pids(launcher.pid), launcher.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        launcher.wait()


def torchrun(args: list[str], tmp: Path, name: str, timeout: float = TIMEOUT) -> None:
    """Run tools/train.py on WORLD gloo ranks; the launcher's and the workers' output is kept in
    ``tmp/<name>.out`` and its end, with the run's log.txt, is the assertion message on failure.

    ``--standalone``: the rendezvous store binds a free port, and the workers share it, so copies
    of this test running at once do not collide."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
           "tools/train.py", "--config", "configs/quickstart.yaml", *args]
    log = tmp / f"{name}.out"
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            status = f"exit {proc.wait(timeout=timeout)}"
        except subprocess.TimeoutExpired:
            stop(proc)
            status = f"timed out (limit {timeout:.0f} s; the workers' Python stacks are in the output)"
    elapsed = time.monotonic() - start
    print(f"torchrun {name}: {elapsed:.1f} s")
    run_log = Path(next(a.split("=", 1)[1] for a in args if a.startswith("output_dir="))) / "log.txt"
    assert status == "exit 0", (
        f"torchrun {name}: {status} after {elapsed:.1f} s\n$ {' '.join(cmd)}\n"
        f"--- output, end (all of it: {log}) ---\n{tail(log, 8000)}\n--- {run_log}, end ---\n{tail(run_log, 3000)}")


def flat(state: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.detach().double().flatten() for v in state.values() if v.dtype.is_floating_point])


def assert_close(ddp_state: dict[str, torch.Tensor], model: torch.nn.Module) -> None:
    ref = model.state_dict()
    assert ddp_state.keys() == ref.keys()
    a, b = flat(ddp_state), flat(ref)
    rel = float((a - b).norm() / b.norm())
    assert rel < 1e-9, rel
    print(f'relative parameter difference {rel:.2e}')
    worst = max(float((ddp_state[k].double() - ref[k].double()).abs().max()) for k in ref
                if ref[k].dtype.is_floating_point)
    assert worst < 1e-8, worst


@pytest.fixture
def one_thread():
    """One intra-op thread, as the torchrun workers (OMP_NUM_THREADS=1); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_ddp_matches_single_process_and_resumes(tmp_path, one_thread):
    start_time = time.monotonic()
    single = Trainer(load_config(ROOT / "configs/quickstart.yaml", overrides(tmp_path, "single", WORLD * P)))
    start = flat(single.model.state_dict()).clone()
    for epoch in range(2):  # the data set and the image store the DDP run reads are built by now
        single.train_epoch(epoch)
    assert not torch.allclose(start, flat(single.model.state_dict()))  # it did train
    print(f"single process: {time.monotonic() - start_time:.1f} s")

    # 1 epoch under DDP, then resume for the 2nd (rank 0 alone writes outputs).
    torchrun(overrides(tmp_path, "ddp", P, "train.epochs=1"), tmp_path, "ddp-epoch1")
    torchrun(overrides(tmp_path, "ddp", P, "--resume", "auto"), tmp_path, "ddp-resume")
    out = tmp_path / "ddp"
    assert (out / "metrics.json").is_file() and (out / "checkpoints/best.pth").is_file()
    assert "resumed from" in (out / "log.txt").read_text()
    assert_close(torch.load(out / "checkpoints/last.pth", map_location="cpu")["model"], single.model)
    # evaluation: each rank extracted half of the test features, rank 0 ranked the gathered set
    ddp_final = json.loads((out / "metrics.json").read_text())["final"]
    single_final = single.evaluate("final")
    for key in ("rank1", "mAP", "mINP"):
        assert abs(ddp_final[key] - single_final[key]) < 1e-6, (key, ddp_final, single_final)


def test_global_batch_norm_is_batch_norm_without_group():
    from reid.engine.gather import GlobalBatchNorm, convert_sync_bn

    bn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    conv = convert_sync_bn(bn, torch.device("cpu"))
    assert isinstance(conv[1], GlobalBatchNorm) and conv[1].weight is bn[1].weight
    assert not dist.is_initialized()
    x = torch.randn(4, 3, 5, 5)
    assert torch.equal(conv(x), torch.nn.functional.batch_norm(
        bn[0](x), None, None, bn[1].weight, bn[1].bias, True, 0.1, bn[1].eps))


def test_torchrun_with_one_process_trains_under_ddp(tmp_path, monkeypatch):
    """``torchrun --nproc_per_node=1`` (its environment, world size 1) initialises a process group,
    so one GPU runs the distributed path: DDP wrapper, SyncBN (GlobalBatchNorm on CPU), gathered losses."""
    import socket

    from reid.engine.distributed import init_distributed

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"TORCHELASTIC_RUN_ID": "test", "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(key, value)
    assert init_distributed("cpu") == (0, 1) and dist.is_initialized()
    try:
        cfg = load_config(None, overrides(tmp_path, "one", 2, "model.backbone.name=mobilenetv2"))
        trainer = Trainer(cfg, rank=0, world_size=1)
        assert trainer.distributed and trainer.ddp is not None and trainer.gather
        assert any(type(m).__name__ == "GlobalBatchNorm" for m in trainer.model.modules())
    finally:
        dist.destroy_process_group()
