"""DDP over torchrun (2 gloo processes on CPU) equals one process on the same global batch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from reid.config import load_config
from reid.engine import Trainer

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2
P = 2  # identities per rank; the single process takes WORLD * P


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


def torchrun(args: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
           "tools/train.py", "--config", "configs/quickstart.yaml", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


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


def test_ddp_matches_single_process_and_resumes(tmp_path):
    torch.set_num_threads(1)
    single = Trainer(load_config(ROOT / "configs/quickstart.yaml", overrides(tmp_path, "single", WORLD * P)))
    start = flat(single.model.state_dict()).clone()
    for epoch in range(2):  # the data set and the image store the DDP run reads are built by now
        single.train_epoch(epoch)
    assert not torch.allclose(start, flat(single.model.state_dict()))  # it did train

    # 1 epoch under DDP, then resume for the 2nd (rank 0 alone writes outputs).
    torchrun(overrides(tmp_path, "ddp", P, "train.epochs=1"))
    torchrun(overrides(tmp_path, "ddp", P, "--resume", "auto"))
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
