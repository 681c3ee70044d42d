#!/usr/bin/env python
"""Peer side of ``scripts/bench_accuracy.py --peer``: the same BoT-MobileNetV2 trained by torchreid.

Runs INSIDE the peer environment (torch + torchvision + torchreid 1.4.0, KaiyangZhou/deep-person-reid;
see ``scripts/bench_accuracy.py`` for how to create it); nothing in ``reid`` or its tests imports it.

    PEER_PYTHON scripts/peer_torchreid.py --spec spec.json --out DIR

``spec.json`` is written by ``bench_accuracy.py`` from the reid config (data folder, image size,
epochs, P x K, Adam settings, the per-epoch lr factors of reid's schedule, loss settings, augmentation
probabilities, weights file). The network is this file's own: torchvision's ``mobilenet_v2`` trunk
(ImageNet weights renamed from the flat file reid loads; last stride 1) -> global average pooling ->
BNNeck (BN1d, bias frozen at 0) -> bias-free classifier, N(0, 0.001). Data, sampler, transforms,
losses, training loop and evaluation are torchreid's: ``ImageDataManager`` over a registered
Market-1501 dataset class pointing at the data folder, ``RandomIdentitySampler``,
``ImageTripletEngine`` (label-smoothed softmax + batch-hard triplet), ``torchreid.optim``'s Adam and
``torchreid.metrics.evaluate_rank`` (Market protocol: same id and camera removed).

Writes ``DIR/peer.json`` (before/final metrics by torchreid's evaluator, wall time, iterations, load
averages) and ``DIR/features.npz`` (final query/gallery features and labels, for reid's evaluator).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    import torchreid
    import torchvision
    from torch import nn
    from torchreid.data.datasets.image.market1501 import Market1501
    from torchreid.data.transforms import Random2DTranslation, RandomErasing
    from torchvision.transforms import RandomHorizontalFlip
except ImportError as exc:  # run with reid's own Python by mistake, or an incomplete peer env
    sys.exit(f"error: {exc}; run this script with the peer environment's Python "
             "(see scripts/bench_accuracy.py --help, --peer-python)")


def torchvision_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Flat ImageNet MobileNetV2 keys (``features.N.conv.I.*``, I = 3 j + k for the j-th conv-BN-ReLU6
    of a block, then the linear projection conv, BN) -> torchvision's nested ``features.N.conv.j.k.*``
    and ``features.N.conv.(n_sub + k).*``; the stem and last conv (``features.0/18``) keep their names."""
    out = {}
    for key, value in state.items():
        m = re.match(r"features\.(\d+)\.conv\.(\d+)\.(.+)", key)
        if not m:
            out[key] = value
            continue
        n, i, rest = int(m[1]), int(m[2]), m[3]
        n_sub = 1 if n == 1 else 2  # conv-BN-ReLU6 sub-blocks: block 1 has no expansion conv
        j, k = divmod(i, 3)
        name = f"conv.{j}.{k}" if j < n_sub else f"conv.{n_sub + i - 3 * n_sub}"
        out[f"features.{n}.{name}.{rest}"] = value
    return out


class BoTMobileNetV2(nn.Module):
    """x [B, 3, H, W] -> training: (logits [B, N], pre-BN feature [B, 1280]); eval: post-BN feature."""

    def __init__(self, num_classes: int, weights: str | None, last_stride: int = 1):
        super().__init__()
        trunk = torchvision.models.mobilenet_v2(weights=None)
        if weights:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            state = torchvision_names({k: v for k, v in state.items() if k.startswith("features.")})
            trunk.features.load_state_dict({k.removeprefix("features."): v for k, v in state.items()})
        if last_stride == 1:  # the first 160-channel block's depthwise conv: /32 -> /16
            trunk.features[14].conv[1][0].stride = (1, 1)
        self.features = trunk.features
        self.bn = nn.BatchNorm1d(1280)
        self.bn.bias.requires_grad_(False)
        self.classifier = nn.Linear(1280, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, 0.0, 0.001)

    def forward(self, x: torch.Tensor):
        feat = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        bn = self.bn(feat)
        return (self.classifier(bn), feat) if self.training else bn


class RecordingEngine(torchreid.engine.ImageTripletEngine):
    """torchreid's triplet engine, also keeping the features of its latest test (query rows, then
    gallery rows: its loaders are unshuffled) and counting training iterations."""

    iterations = 0
    captured: list[torch.Tensor] = []

    def test(self, *args, **kwargs):
        self.captured = []
        return super().test(*args, **kwargs)

    def extract_features(self, input):  # noqa: A002 (torchreid's name)
        features = super().extract_features(input)
        self.captured.append(features.detach().cpu())
        return features

    def forward_backward(self, data):
        self.iterations += 1
        return super().forward_backward(data)


def register_dataset(root: Path) -> str:
    """Register ``root`` (a Market-1501 folder layout) as a torchreid dataset; returns its name."""
    name = "reid_peer_" + re.sub(r"\W", "_", root.name)
    cls = type("PeerMarket", (Market1501,), {"dataset_dir": root.name})
    torchreid.data.register_image_dataset(name, cls)
    return name


def align_transforms(transform, spec: dict) -> list[str]:
    """Set torchreid's train transforms to the spec's probabilities and erasing settings; returns
    what was set (torchreid's defaults: crop p 0.5, erasing fill = norm_mean, which here is 0)."""
    done = []
    er = spec["erasing"]
    for t in transform.transforms:
        if isinstance(t, RandomHorizontalFlip):
            t.p = spec["flip_prob"]
            done.append(f"flip p={t.p}")
        elif isinstance(t, Random2DTranslation):
            t.p = spec["crop_prob"]
            done.append(f"crop p={t.p}")
        elif isinstance(t, RandomErasing):
            t.probability, t.sl, t.sh, t.r1 = er["prob"], er["area"][0], er["area"][1], er["aspect"]
            t.mean = list(er["fill"])
            done.append(f"erasing p={t.probability} area=[{t.sl}, {t.sh}] r1={t.r1} fill={t.mean}")
    return done


def torchreid_metrics(qf, gf, q, g, spec: dict) -> dict[str, float]:
    """rank-1/5/10 and mAP by torchreid's evaluator (as its engine computes them)."""
    if spec["normalize"]:
        qf, gf = F.normalize(qf, dim=1), F.normalize(gf, dim=1)
    distmat = torchreid.metrics.compute_distance_matrix(qf, gf, spec["metric"]).numpy()
    cmc, mAP = torchreid.metrics.evaluate_rank(distmat, q["pids"], g["pids"], q["camids"], g["camids"],
                                                max_rank=spec["max_rank"], use_metric_cuhk03=False)
    return {"rank1": float(cmc[0]), "rank5": float(cmc[4]), "rank10": float(cmc[9]), "mAP": float(mAP)}


def split_features(engine: RecordingEngine, q: dict) -> tuple[torch.Tensor, torch.Tensor]:
    feats = torch.cat(engine.captured)
    return feats[:len(q["pids"])], feats[len(q["pids"]):]


def labels(items) -> dict[str, np.ndarray]:
    return {"pids": np.array([it[1] for it in items]), "camids": np.array([it[2] for it in items])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--spec", required=True, help="JSON written by scripts/bench_accuracy.py")
    parser.add_argument("--out", required=True, help="folder for peer.json, features.npz, torchreid's log")
    parser.add_argument("--workers", type=int, default=2, help="torchreid DataLoader workers")
    args = parser.parse_args()
    spec = json.loads(Path(args.spec).read_text())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    use_gpu = spec["device"].startswith("cuda")

    load_start = os.getloadavg()
    torchreid.utils.set_random_seed(spec["seed"])
    start = time.perf_counter()
    root = Path(spec["data_root"]).resolve()
    dm = torchreid.data.ImageDataManager(
        root=str(root.parent), sources=register_dataset(root), height=spec["height"], width=spec["width"],
        transforms=["random_flip", "random_crop", "random_erase"], norm_mean=spec["pixel_mean"],
        norm_std=spec["pixel_std"], use_gpu=use_gpu, batch_size_train=spec["num_ids"] * spec["num_instances"],
        batch_size_test=spec["test_batch_size"], workers=args.workers, num_instances=spec["num_instances"],
        train_sampler="RandomIdentitySampler")
    for line in align_transforms(dm.train_loader.dataset.transform, spec):
        print(f"=> peer transform: {line}")
    model = BoTMobileNetV2(dm.num_train_pids, spec["weights"], spec["last_stride"])
    if use_gpu:
        model = model.cuda()
    optimizer = torchreid.optim.build_optimizer(model, optim="adam", lr=spec["lr"], weight_decay=spec["weight_decay"],
                                                adam_beta1=spec["betas"][0], adam_beta2=spec["betas"][1])
    factors = spec["lr_factors"]  # reid's warmup + cosine, per epoch (torchreid has no warmup)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: factors[min(e, len(factors) - 1)])
    engine = RecordingEngine(dm, model, optimizer, margin=spec["margin"], weight_t=spec["triplet_weight"],
                             weight_x=spec["ce_weight"], scheduler=scheduler, use_gpu=use_gpu, label_smooth=True)
    engine.criterion_x.eps = spec["epsilon"]
    test_args = {"dist_metric": spec["metric"], "normalize_feature": spec["normalize"]}
    name = dm.sources[0]
    q, g = (labels(items) for items in dm.fetch_test_loaders(name))
    before_feats = None
    if spec["eval_before"]:
        engine.epoch = 0
        engine.test(**test_args)
        before_feats = split_features(engine, q)
    engine.run(save_dir=str(out / "log"), max_epoch=spec["epochs"], print_freq=20, eval_freq=-1, **test_args)
    wall = time.perf_counter() - start
    load_end = os.getloadavg()

    qf, gf = split_features(engine, q)
    np.savez(out / "features.npz", qf=qf.numpy(), gf=gf.numpy(), q_pids=q["pids"], g_pids=g["pids"],
             q_camids=q["camids"], g_camids=g["camids"])
    batch = spec["num_ids"] * spec["num_instances"]
    record = {
        "framework": f"torchreid {torchreid.__version__}",
        "before": torchreid_metrics(*before_feats, q, g, spec) if before_feats else None,
        "final": torchreid_metrics(qf, gf, q, g, spec),
        "wall_s": wall,
        "iterations": engine.iterations,
        "images_per_s": engine.iterations * batch / wall,
        "load_start": list(load_start),
        "load_end": list(load_end),
        "threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__},
    }
    (out / "peer.json").write_text(json.dumps(record, indent=2))
    print(f"=> peer: R1 {100 * record['final']['rank1']:.1f} mAP {100 * record['final']['mAP']:.1f} "
          f"in {wall / 60:.1f} min ({engine.iterations} iterations); wrote {out / 'peer.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
