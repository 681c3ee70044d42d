"""PCB: syfafterzy/PCB_RPP_for_reID, train_PCB.sh (``PCB.py -a resnet50 -b 64 --epochs 60 --feature 256
--height 384 --width 128 --step-size 40``, ``--lr`` 0.1 and ``--dropout`` 0.5 by default), against
configs/pcb/market1501.yaml."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace as NS

import torch
import torch.nn.functional as F

CONFIG = "pcb/market1501.yaml"
SIZE = (192, 64)  # 6 stripes of a 12-row map; the recipe's is 384x128
# adjust_lr(epoch) (PCB.py:136-140), 0-based: 0.1 (backbone 0.01) for 0-39, x0.1 from 40
EPOCHS = [0, 20, 39, 40, 59]
#: the release's classifiers are 751 wide whatever the data set (reid/models/resnet.py:37)
CLASSES = 751


_STEM = {"conv1": "trunk.0.0", "bn1": "trunk.0.1"}


def map_name(k: str):
    """release ResNet(FCN=True) -> reid's multibranch PCB: base.* -> trunk.*, local_conv / feat_bn2d -> the
    shared reduction (one module, under each of the six heads' names), instance{i} -> stripe i's classifier."""
    head, rest = k.split(".", 1)
    if head == "base":
        part, rest = rest.split(".", 1)
        if part == "fc":
            return None
        return f"{_STEM[part]}.{rest}" if part in _STEM else f"trunk.{part[5:]}.{rest}"
    if head in ("local_conv", "feat_bn2d"):
        i = 0 if head == "local_conv" else 1
        return [f"branches.0.heads.{s}.reduction.{i}.{rest}" for s in range(6)]
    return f"branches.0.heads.{head[8:]}.classifier.{rest}"


class _PyTwoPooling:
    """``F`` for the release's file, whose ``sx = x.size(2)/6`` is Python 2 integer division: the pooling
    kernel and stride are floored (24 / 6 = 4 exactly at 384x128)."""

    def __getattr__(self, name):
        return getattr(F, name)

    @staticmethod
    def avg_pool2d(x, kernel_size, stride=None, **kw):
        def floor(v):
            return tuple(int(i) for i in v) if isinstance(v, (tuple, list)) else int(v)

        return F.avg_pool2d(x, floor(kernel_size), floor(stride) if stride is not None else None, **kw)


class _StripeMajorDropout(torch.nn.Module):
    """The release's Dropout(0.5) on the pooled stripes x [B, C, 6, 1], its mask drawn in reid's element
    order (image, stripe, channel) instead of (image, channel, stripe): the same i.i.d. mask
    distribution, and the same draws on both sides."""

    def __init__(self, drop: torch.nn.Dropout):
        super().__init__()
        self.p = drop.p

    def forward(self, x):
        y = F.dropout(x.permute(0, 2, 3, 1).contiguous(), self.p, self.training)
        return y.permute(0, 3, 1, 2)


class Release:
    """reid/models/resnet.py ResNet(50, FCN=True, num_features=256, dropout=0.5), nn.CrossEntropyLoss on each
    stripe (reid/trainers_partloss.py:73-83), SGD nesterov over PCB.py's two groups (base lr_mult 0.1) and
    PCB.py's adjust_lr (read from main() in the checkout); the update of trainers_partloss.py:33-41
    (the six losses back-propagated together: the gradient of their sum)."""

    def __init__(self, release_dir, num_classes: int, size):
        import shims

        root = Path(release_dir)
        shims.alias_package("pcb_release", root / "reid")
        import pcb_release.models.resnet as resnet

        resnet.F = _PyTwoPooling()
        self.model = resnet.ResNet(50, pretrained=True, num_features=256, dropout=0.5, num_classes=num_classes,
                                   FCN=True)
        self.model.drop = _StripeMajorDropout(self.model.drop)
        self.criterion = torch.nn.CrossEntropyLoss()
        base = set(map(id, self.model.base.parameters()))
        groups = [{"params": list(self.model.base.parameters()), "lr_mult": 0.1},
                  {"params": [p for p in self.model.parameters() if id(p) not in base], "lr_mult": 1.0}]
        self.optimizer = torch.optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
        args = NS(arch="resnet50", step_size=40, lr=0.1)
        self.adjust_lr = shims.nested_function(root / "PCB.py", "main", "adjust_lr",
                                               {"args": args, "optimizer": self.optimizer})

    def state_dict(self):
        return self.model.state_dict()

    def step(self, images, labels, epoch: int):
        self.adjust_lr(epoch)
        self.model.train()
        _, logits = self.model(images)
        losses = [self.criterion(c, labels) for c in logits]
        self.optimizer.zero_grad()
        # torch.autograd.backward([loss0..loss5], [ones]) (trainers_partloss.py:40): d(sum)/d(params)
        total = sum(losses)
        total.backward()
        self.optimizer.step()
        return max(g["lr"] for g in self.optimizer.param_groups), total.item()

    def features(self, images):
        """out0 (reid/models/resnet.py:135): the 6 pooled stripes, each L2-normalised, as reid orders
        them (stripe-major, [B, 6 * 2048])."""
        self.model.eval()
        with torch.no_grad():
            out0, _ = self.model(images)
        return out0.flatten(2).transpose(1, 2).flatten(1)
