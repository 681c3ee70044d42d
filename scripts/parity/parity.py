"""Training-step parity of a reid recipe with its authors' released code (development time, not CI).

    python scripts/parity/parity.py --net bot --release-dir /tmp/releases/bot [--set KEY=VALUE ...]

Builds the release's model, loss, optimiser and learning-rate schedule from a local checkout of the
release (``--release-dir``; shims in ``shims.py``) and reid's from ``configs/<net>/market1501.yaml``
(plus the ``--set`` overrides) with reid's own builders, in float64. The release's initial weights
are copied into reid's model (a name map per network, ``nets/<net>.py``; every reid tensor must get
one of the right shape). Both then take the same optimiser steps on the same synthetic batches (P x K
labels, ``--size``) at the epochs ``--epochs`` (each side's lr set for that epoch; the epochs in between
are not run). Printed per step: each side's lr and loss, their relative difference, and the largest
relative parameter difference (per tensor max|a - b| / max|b|, the max over tensors); at the start and
at the end the same for the eval-mode test features. Exit status 1 when a goal is missed (loss 1e-9,
parameters 1e-6, features 1e-6 relative).
"""
from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(HERE)]

NETS = ("bot", "mgn", "rganet", "bdb", "lagnet", "pcb")
LOSS_GOAL, PARAM_GOAL, FEAT_GOAL = 1e-9, 1e-6, 1e-6
CONTROL_EPS = 1e-15


def release_commit(path: Path) -> str:
    """The checkout's commit: ``git rev-parse HEAD`` there, else a COMMIT file (exported trees)."""
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        if out:
            return out
    except (OSError, subprocess.CalledProcessError):
        pass
    f = path / "COMMIT"
    return f.read_text().strip() if f.is_file() else "unknown (no git, no COMMIT file)"


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max|a - b| / max|b| (0 when both are 0)."""
    a, b = a.detach().double(), b.detach().double()
    scale = b.abs().max().item()
    diff = (a - b).abs().max().item()
    return diff / scale if scale > 0 else diff


def copy_weights(release_sd: dict, reid_model: torch.nn.Module, map_name, allow_unset=()) -> dict[str, str]:
    """Copy the release's state into reid's model through ``map_name(release_key) -> reid key(s) | None``;
    returns {reid key: release key}. Every reid tensor must be set, with the same shape."""
    target = reid_model.state_dict()
    pairs: dict[str, str] = {}
    for rk, value in release_sd.items():
        mapped = map_name(rk)
        for k in ([mapped] if isinstance(mapped, str) else (mapped or [])):
            if k not in target:
                raise SystemExit(f"error: release tensor {rk} maps to {k}, which reid's model does not have")
            if tuple(target[k].shape) != tuple(value.shape):
                raise SystemExit(f"error: {rk} {tuple(value.shape)} -> {k} {tuple(target[k].shape)}: shapes differ")
            if k in pairs:
                raise SystemExit(f"error: reid tensor {k} set twice ({pairs[k]}, {rk})")
            target[k] = value.detach().clone().to(target[k].dtype)
            pairs[k] = rk
    unset = [k for k in target if k not in pairs and not any(k.endswith(s) for s in allow_unset)]
    if unset:
        raise SystemExit(f"error: {len(unset)} reid tensors get no release value, e.g. {unset[:5]}")
    reid_model.load_state_dict(target)
    return pairs


def max_param_diff(release_model, reid_model, pairs: dict[str, str]) -> tuple[float, str, float, float, str]:
    """(largest relative difference of the trained parameters, its name; of the buffers; of the last
    step's gradients, its name)."""
    rsd = dict(release_model.state_dict(keep_vars=True))
    params = dict(reid_model.named_parameters())
    buffers = dict(reid_model.named_buffers())
    worst = [0.0, "-", 0.0, 0.0, "-"]  # parameter, its name, buffer, gradient, its name
    for k, rk in pairs.items():
        if k in NOISE_ONLY:
            continue
        if k in params:
            d = rel(params[k], rsd[rk])
            if d > worst[0]:
                worst[0], worst[1] = d, k
                g = rsd[rk].grad
                if g is not None:  # the release's gradient where the parameters differ most
                    i = (params[k].detach() - rsd[rk].detach()).abs().argmax()
                    worst[1] = f"{k} (|grad| {g.flatten()[i].abs().item():.1e} there)"
            ga, gb = params[k].grad, rsd[rk].grad
            if ga is not None and gb is not None:
                g = rel(ga, gb)
                if g > worst[3]:
                    worst[3], worst[4] = g, k
            elif (ga is None) != (gb is None) and params[k].requires_grad:
                worst[3], worst[4] = float("inf"), k + " (a gradient on one side only)"
        elif k in buffers and buffers[k].is_floating_point():
            worst[2] = max(worst[2], rel(buffers[k], rsd[rk]))
    return tuple(worst)


#: parameters whose exact gradient is zero (the network's output does not depend on them): found at
#: the first step, their updates (rounding noise, which Adam scales up to lr-sized steps) are not compared
NOISE_ONLY: set[str] = set()


def find_noise_only(release_model, reid_model, pairs: dict[str, str]) -> list[str]:
    """reid names of the parameters whose release gradient is at rounding level: max|g| below 1e-9 x
    the median over the tensors of max|g| (e.g. BoT's stem bn1.bias without a stem ReLU: every path from
    it ends in a training-mode BatchNorm, which removes a constant shift)."""
    rsd = dict(release_model.state_dict(keep_vars=True))
    params = dict(reid_model.named_parameters())
    grads = {k: rsd[rk].grad.abs().max().item() for k, rk in pairs.items()
             if k in params and rsd[rk].grad is not None}
    if not grads:
        return []
    median = sorted(grads.values())[len(grads) // 2]
    return sorted(k for k, g in grads.items() if g < 1e-9 * median)


def batch(step: int, p: int, k: int, size, num_classes: int):
    """Synthetic images [P*K, 3, H, W] (seeded by the step) and P x K labels drawn from num_classes."""
    g = torch.Generator().manual_seed(1000 + step)
    images = torch.randn(p * k, 3, *size, generator=g, dtype=torch.float64)
    ids = torch.randperm(num_classes, generator=g)[:p]
    return images, ids.repeat_interleave(k)


def build_reid(cfg, num_classes: int):
    """reid's model, losses and optimiser, by the builders reid's Trainer calls."""
    import reid.losses
    import reid.models
    from reid.engine.optim import build_optimizer

    model = reid.models.build_model(cfg.model, num_classes, input_size=cfg.input.size).to(torch.float64)
    losses = reid.losses.build_losses(cfg.losses).to(torch.float64)
    optimizer = build_optimizer(cfg.optimizer, model, fused=False)
    return model, losses, optimizer


def reid_step(cfg, model, losses, optimizer, images, labels, epoch: int) -> tuple[float, float]:
    """One reid training step at ``epoch`` as Trainer.run_step takes it; returns (lr, loss)."""
    from reid.engine.amp import backward_and_step
    from reid.engine.schedule import lr_factor, set_lr

    set_lr(optimizer, lr_factor(epoch, cfg.schedule, float(cfg.optimizer.lr), int(cfg.train.epochs)))
    model.train()
    outputs = model(images)
    total, _ = losses(outputs, {"images": images, "pids": labels})
    backward_and_step(total, optimizer, None, model.parameters(), float(cfg.train.grad_clip or 0))
    return max(g["lr"] for g in optimizer.param_groups), float(total.detach())


def reid_features(cfg, model, images) -> torch.Tensor:
    """The eval-mode test feature, each of ``test.norm_parts`` parts L2-normalised as reid's evaluator
    does when there are several (PCB); the whole-vector normalisation is left out (both sides raw)."""
    from reid.evaluation.features import normalize_parts

    model.eval()
    with torch.no_grad():
        f = model(images)["features"].flatten(1)
    parts = int(cfg.test.get("norm_parts", 1) or 1)
    return normalize_parts(f, parts) if parts > 1 and cfg.test.normalize else f


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--net", required=True, choices=NETS)
    ap.add_argument("--release-dir", required=True, type=Path, help="a checkout of the net's release")
    ap.add_argument("--epochs", type=int, nargs="+", help="0-based epochs of the steps (default: per net)")
    ap.add_argument("--ids", type=int, default=4, help="P identities per batch")
    ap.add_argument("--instances", type=int, default=2, help="K images per identity")
    ap.add_argument("--classes", type=int, help="training identities (classifier width; default: per net, 8)")
    ap.add_argument("--size", type=int, nargs=2, help="input H W (default: per net, reduced)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--torch-1.1-schedulers", dest="torch11", action="store_true",
                    help="BoT, MGN, LAG-Net: their epoch-start scheduler.step() as PyTorch >= 1.1 runs it "
                         "(one epoch ahead); default: PyTorch <= 1.0, as the releases ran")
    ap.add_argument("--control", action="store_true",
                    help="run the release against a copy of itself whose images are x (1 + 1e-15): how far "
                         "rounding alone takes the two apart (the floor of the comparison)")
    ap.add_argument("--set", dest="overrides", nargs="+", default=[], metavar="KEY=VALUE",
                    help="overrides of reid's config")
    args = ap.parse_args(argv)
    if not args.release_dir.is_dir():
        ap.error(f"--release-dir {args.release_dir} is not a directory")
    spec = importlib.import_module(f"nets.{args.net}")
    args.classes = args.classes or getattr(spec, "CLASSES", 8)
    if args.ids < 2 or args.instances < 2 or args.classes < args.ids:
        ap.error("--ids and --instances need at least 2, --classes at least --ids")
    torch.set_num_threads(1)
    import shims

    from reid.config import load_config

    shims.SCHEDULER_OFFSET = int(args.torch11)
    print(f"release: {args.release_dir} at commit {release_commit(args.release_dir)}")
    size = list(args.size or spec.SIZE)
    # train.shards=1: the release runs here on one device (no DataParallel), so reid's emulation of
    # DataParallel's per-shard BatchNorm is off (tests/test_fidelity_switches.py checks that one)
    over = ["model.backbone.pretrained=false", "train.dtype=float64", "train.amp=off", "train.shards=1",
            f"input.size=[{size[0]},{size[1]}]", *getattr(spec, "OVERRIDES", []), *args.overrides]
    cfg = load_config(ROOT / "configs" / spec.CONFIG, over)
    print(f"reid: {spec.CONFIG} + {' '.join(over)}")
    shims.install(args.release_dir)
    torch.manual_seed(args.seed)
    rel_side = spec.Release(args.release_dir, args.classes, size)
    if args.control:  # the release against itself, its input changed at the rounding level
        twin = spec.Release(args.release_dir, args.classes, size)
        twin.model.load_state_dict(rel_side.state_dict())
        model = twin.model
        pairs = {k: k for k in rel_side.state_dict()}
        print(f"CONTROL: the release against a copy of itself fed images x (1 + {CONTROL_EPS:g}); reid not run")
    else:
        model, losses, optimizer = build_reid(cfg, args.classes)
        pairs = copy_weights(rel_side.state_dict(), model, spec.map_name, getattr(spec, "ALLOW_UNSET", ()))
    print(f"copied {len(pairs)} tensors release -> reid; batch {args.ids} x {args.instances} at "
          f"{size[0]}x{size[1]}, {args.classes} classes, float64, 1 thread")
    fail = False

    def features(tag):
        nonlocal fail
        x, _ = batch(-1, args.ids, args.instances, size, args.classes)
        mine = twin.features(x * (1 + CONTROL_EPS)) if args.control else reid_features(cfg, model, x)
        d = rel(mine, rel_side.features(x))
        fail |= d > FEAT_GOAL
        print(f"eval features ({tag}): max rel diff {d:.2e}")

    features("start")
    epochs = args.epochs or spec.EPOCHS
    print(f"{'step':>4} {'epoch':>5} {'lr release':>11} {'lr reid':>11} {'loss release':>20} {'loss reid':>20} "
          f"{'rel loss':>9} {'rel param':>9} {'rel buffer':>10} {'rel grad':>9}  worst parameter; worst gradient")
    worst_loss = worst_param = 0.0
    for step, epoch in enumerate(epochs):
        t0 = time.time()
        images, labels = batch(step, args.ids, args.instances, size, args.classes)
        torch.manual_seed(10_000 + step)  # the same dropout / band draws on both sides
        state = torch.random.get_rng_state()
        py_state = shims.py_random_state(step)
        lr_a, loss_a = rel_side.step(images, labels, epoch)
        torch.random.set_rng_state(state)
        shims.py_random_state(step, py_state)
        if args.control:
            lr_b, loss_b = twin.step(images * (1 + CONTROL_EPS), labels, epoch)
        else:
            lr_b, loss_b = reid_step(cfg, model, losses, optimizer, images, labels, epoch)
        dl = abs(loss_a - loss_b) / abs(loss_a)
        if step == 0:
            NOISE_ONLY.update(find_noise_only(rel_side.model, model, pairs))
            if NOISE_ONLY:
                print(f"     not compared: {', '.join(sorted(NOISE_ONLY))}: gradient zero up to rounding")
        dp, name, db, dg, gname = max_param_diff(rel_side.model, model, pairs)
        worst_loss, worst_param = max(worst_loss, dl), max(worst_param, dp)
        print(f"{step:>4} {epoch:>5} {lr_a:>11.4e} {lr_b:>11.4e} {loss_a:>20.15f} {loss_b:>20.15f} "
              f"{dl:>9.1e} {dp:>9.1e} {db:>10.1e} {dg:>9.1e}  {name}; {gname} ({time.time() - t0:.0f} s)", flush=True)
    fail |= worst_loss > LOSS_GOAL or worst_param > PARAM_GOAL
    features("end")
    print(f"max rel loss diff {worst_loss:.1e}, max rel parameter diff {worst_param:.1e} over {len(epochs)} steps "
          f"(epochs {' '.join(map(str, epochs))}): {'MISSED' if fail else 'met'} the goals "
          f"(loss {LOSS_GOAL:g}, parameters {PARAM_GOAL:g}, features {FEAT_GOAL:g})")
    return int(fail)


if __name__ == "__main__":
    sys.exit(main())
