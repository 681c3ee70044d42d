"""RGA-Net: microsoft/Relation-Aware-Global-Attention-Networks, main_imgreid.py as scripts/run_rgasc_*.sh
run it (resnet50_rga, rgasc, Adam, --dropout 0, 2,048-D, 600 epochs, the LRScheduler of main_imgreid.py),
against configs/rganet/market1501.yaml."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

CONFIG = "rganet/market1501.yaml"
# the RGA modules are built for the map sizes (both sides); the recipe's is 256x128. Below 192x96 the
# release's spatial gate of layer2-4 gets 0 channels ((1 + hw/8) // 8 = 0; reid's has at least 1)
SIZE = (192, 96)
# warm-up (0, 19), 8e-4 (20, 79), the halvings at 80, 120, ..., 360, then the release stays at
# 3.125e-6 until 599 (reid's milestones 400..560 differ: issue 20)
EPOCHS = [0, 20, 80, 360, 400, 599]


_RGA = {"theta": "theta", "phi": "phi", "gx": "gx", "gg": "relation"}
_GATE = {"0": "gate.0.0", "1": "gate.0.1", "3": "gate.1.0", "4": "gate.1.1"}


def map_name(k: str) -> str:
    """ResNet50_RGA_Model -> reid's RGANet: backbone.rga_att{i}.{theta,phi,gx,gg,W}_{spatial,channel} ->
    rga.layer{i}.{spatial,channel}.{theta,phi,gx,relation,gate}; feat_bn -> head.bn, cls -> head.classifier."""
    head, rest = k.split(".", 1)
    if head != "backbone":
        return {"feat_bn": "head.bn", "cls": "head.classifier"}[head] + "." + rest
    if not rest.startswith("rga_att"):
        return k
    att, module, rest = rest.split(".", 2)
    part, kind = module.rsplit("_", 1)
    prefix = f"rga.layer{att[7:]}.{kind}"
    if part == "W":
        i, rest = rest.split(".", 1)
        return f"{prefix}.{_GATE[i]}.{rest}"
    return f"{prefix}.{_RGA[part]}.{rest}"


class Release:
    """reid/models/rga_model.py ResNet50_RGA_Model, reid/loss/loss_set.py losses, ImgTrainer._forward
    (reid/img_trainers.py), Adam over main_imgreid.py's two parameter groups, its LRScheduler."""

    def __init__(self, release_dir, num_classes: int, size):
        import shims

        root = Path(release_dir)
        shims.alias_package("rga_release", root / "reid")
        sys.path.insert(0, str(root / "reid" / "models" / "models_utils"))  # 'from rga_modules import' (py2)
        from rga_release.img_trainers import ImgTrainer
        from rga_release.loss.loss_set import CrossEntropyLabelSmoothLoss, TripletHardLoss
        from rga_release.models.rga_model import ResNet50_RGA_Model
        from rga_release.utils.lr_scheduler import LRScheduler

        self.model = ResNet50_RGA_Model(pretrained=False, num_feat=2048, height=size[0], width=size[1], dropout=0,
                                        num_classes=num_classes, branch_name="rgasc")
        criterion = [CrossEntropyLabelSmoothLoss(num_classes), TripletHardLoss(margin=0.3)]
        self.trainer = ImgTrainer(self.model, criterion, None)
        base = set(map(id, self.model.backbone.parameters()))  # main_imgreid.py:138-144
        groups = [{"params": [p for p in self.model.backbone.parameters() if p.requires_grad], "lr_mult": 1.0},
                  {"params": [p for p in self.model.parameters() if id(p) not in base and p.requires_grad],
                   "lr_mult": 1.0}]
        self.optimizer = torch.optim.Adam(groups, lr=0.1, weight_decay=5e-4)  # --lr default; the scheduler sets it
        self.scheduler = LRScheduler(base_lr=0.0008, step=[80, 120, 160, 200, 240, 280, 320, 360], factor=0.5,
                                     warmup_epoch=20, warmup_begin_lr=0.000008)  # main_imgreid.py:165-167

    def state_dict(self):
        return self.model.state_dict()

    def step(self, images, labels, epoch: int):
        lr = self.scheduler.update(epoch)  # main_imgreid.py:171-173
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self.model.train()
        loss, _, _ = self.trainer._forward([images], labels)  # img_trainers.py:55-63 (normalise/erase: off)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return lr, loss.item()

    def features(self, images):
        self.model.eval()
        with torch.no_grad():
            return self.model([images], training=False)[1]
