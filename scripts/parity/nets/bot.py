"""BoT: michuanhaohao/reid-strong-baseline, configs/softmax_triplet.yml (the Market run without the
centre loss, Experiment-all_tricks-without_center-market.sh), against configs/bot/market1501.yaml."""
from __future__ import annotations

from types import SimpleNamespace as NS

import torch

CONFIG = "bot/market1501.yaml"
SIZE = (128, 64)  # global average pooling: any size; the recipe's is 256x128
# warm-up (0, 5, 9), base lr (10, 39), after the 1st decay (40, 69), after the 2nd (70, 119): the
# release's WarmupMultiStepLR stepped at each epoch start under PyTorch <= 1.0 (see shims.SCHEDULER_OFFSET)
EPOCHS = [0, 5, 9, 10, 39, 40, 69, 70, 119]


def map_name(k: str) -> str:
    """Release Baseline -> reid BoT: base.* -> backbone.*, bottleneck -> head.bn, classifier -> head.classifier."""
    if k.startswith("base."):
        return "backbone." + k[5:]
    return {"bottleneck": "head.bn", "classifier": "head.classifier"}[k.split(".")[0]] + "." + k.split(".", 1)[1]


ALLOW_UNSET = ("backbone.fc.weight", "backbone.fc.bias")


class Release:
    """The release's Baseline, make_loss, make_optimizer and WarmupMultiStepLR with the values of
    configs/softmax_triplet.yml over config/defaults.py; the update of engine/trainer.py:_update."""

    def __init__(self, release_dir, num_classes: int, size):
        from layers import make_loss
        from modeling import Baseline
        from solver import WarmupMultiStepLR, make_optimizer

        cfg = NS(
            MODEL=NS(LAST_STRIDE=1, NECK="bnneck", NAME="resnet50", METRIC_LOSS_TYPE="triplet", IF_LABELSMOOTH="on"),
            DATALOADER=NS(SAMPLER="softmax_triplet"),
            SOLVER=NS(MARGIN=0.3, BASE_LR=0.00035, WEIGHT_DECAY=0.0005, BIAS_LR_FACTOR=1, WEIGHT_DECAY_BIAS=0.0005,
                      OPTIMIZER_NAME="Adam", MOMENTUM=0.9, STEPS=[40, 70], GAMMA=0.1, WARMUP_FACTOR=0.01,
                      WARMUP_ITERS=10, WARMUP_METHOD="linear"),
            TEST=NS(NECK_FEAT="after"))
        # pretrain_choice 'none': no ImageNet file; the weights are copied to reid's model instead
        self.model = Baseline(num_classes, cfg.MODEL.LAST_STRIDE, "", cfg.MODEL.NECK, cfg.TEST.NECK_FEAT,
                              cfg.MODEL.NAME, "none")
        self.loss_fn = make_loss(cfg, num_classes)
        self.optimizer = make_optimizer(cfg, self.model)
        s = cfg.SOLVER
        self.scheduler = WarmupMultiStepLR(self.optimizer, s.STEPS, s.GAMMA, s.WARMUP_FACTOR, s.WARMUP_ITERS,
                                           s.WARMUP_METHOD)

    def state_dict(self):
        return self.model.state_dict()

    def step(self, images, labels, epoch: int):
        # engine/trainer.py:172-174: scheduler.step() at EPOCH_STARTED: the 0-based epoch e trains at
        # last_epoch e under PyTorch <= 1.0 (e + 1 under >= 1.1; shims.SCHEDULER_OFFSET)
        import shims

        self.scheduler.last_epoch = epoch + shims.SCHEDULER_OFFSET
        for g, lr in zip(self.optimizer.param_groups, self.scheduler.get_lr()):
            g["lr"] = lr
        # engine/trainer.py:_update
        self.model.train()
        self.optimizer.zero_grad()
        score, feat = self.model(images)
        loss = self.loss_fn(score, feat, labels)
        loss.backward()
        self.optimizer.step()
        return self.optimizer.param_groups[0]["lr"], loss.item()

    def features(self, images):
        self.model.eval()
        with torch.no_grad():
            return self.model(images)
