"""LAG-Net: SWJTU-3DVision/LAG-Net, lagnet/demo.sh (``--batchid 8 --epochs 600 --decay_type step_320_380_420
--loss 1*CrossEntropy+2*Triplet+1*L2 --margin 1.2 --lr 2e-4 --optimizer ADAM --amsgrad``, option.py's
defaults: 24 attention maps, L2_beta 0.05, 256-D reductions), against configs/lagnet/market1501.yaml."""
from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np
import torch
import torch.nn.functional as F

CONFIG = "lagnet/market1501.yaml"
SIZE = (96, 32)  # adaptive pooling everywhere: any size; the recipe's is 384x128
# trainer.py:31 steps the MultiStepLR before each epoch (0-based e at last_epoch e under PyTorch <= 1.0,
# shims.SCHEDULER_OFFSET): x0.1 at 320, 380, 420; 600 epochs
EPOCHS = [0, 319, 320, 379, 380, 420, 599]


_HEAD = {"classifier_gs": "gs", "classifier_ps": "ps", "classifier_la": "la", "classifier_d": "d",
         "classifier_p0_ps": "p0", "classifier_p1_ps": "p1", "classifier_p2_ps": "p2"}
_HEAD_PART = {"fc_block1.0": "embed.0", "fc_block1.2": "embed.2", "fc_block2.0": "embed.3",
              "classifier.0": "classifier"}
_REDUCTION = {"reduction_0": "gs", "reduction_1": "ps", "reduction_2": "la", "reduction_3": "d"}
#: release modules with no reid counterpart: ``test`` (the whole torchvision ResNet kept as an attribute;
#: its layer3[1:], layer4 and fc are not used), ``channel_attention`` (computed, never used),
#: ``reduction_4..6`` (their output is overwritten before use); none gets a gradient
UNUSED = ("test.", "channel_attention.", "reduction_4.", "reduction_5.", "reduction_6.")


def map_name(k: str):
    """model/lag.py LAG -> reid's LAGNet (trunk, *_stream, las, heads, reductions)."""
    if k.startswith(UNUSED):
        return None
    head, rest = k.split(".", 1)
    if head == "backbone":
        return "trunk." + rest
    if head.endswith("_stream"):
        stage, rest = rest.split(".", 1)
        if stage == "0":  # layer3[1:]: reid keeps the block indices 1..5
            i, rest = rest.split(".", 1)
            return f"{head}.0.{int(i) + 1}.{rest}"
        return f"{head}.1.{rest}"
    if head in _REDUCTION:
        return f"reductions.{_REDUCTION[head]}.{rest}"
    if head == "attentions":
        part, rest = rest.split(".", 1)
        return f"las.attention.{ {'conv': 0, 'bn': 1}[part] }.{rest}"
    block, i, rest = rest.split(".", 2)
    return f"heads.{_HEAD[head]}.{_HEAD_PART[block + '.' + i]}.{rest}"


class _TorchChoice:
    """``np.random.choice(M, 1, p=w)`` (lag.py:236) drawn as reid draws it: torch.multinomial on the
    float32 weights, from torch's generator (shims: the same draws on both sides)."""

    def __getattr__(self, name):
        return getattr(np.random, name)

    @staticmethod
    def choice(m, size, p):
        return torch.multinomial(torch.as_tensor(p).float(), 1).numpy()


class Release:
    """model/lag.py LAG, loss/__init__.py Loss (CE, Triplet, CenterLoss as L2), utils/utility.py
    make_optimizer / make_scheduler; the update of trainer.py:train with its attention centres."""

    def __init__(self, release_dir, num_classes: int, size):
        import model.lag as lag
        from loss import Loss
        from utils.utility import make_optimizer, make_scheduler

        lag.np = NS(random=_TorchChoice(), **{k: getattr(np, k) for k in ("float32", "array")})
        args = NS(num_classes=num_classes, feats=256, num_attentions=24, num_features=2048, L2_beta=5e-2,
                  pool="avg", optimizer="ADAM", lr=2e-4, beta1=0.9, beta2=0.999, epsilon=1e-8, amsgrad=True,
                  weight_decay=5e-4, decay_type="step_320_380_420", gamma=0.1, momentum=0.9, dampening=0,
                  nesterov=False, loss="1*CrossEntropy+2*Triplet+1*L2", margin=1.2, nGPU=1, model="LAG", cpu=True,
                  load="", apex="no")
        self.args = args
        self.model = lag.LAG(args)
        self.loss = Loss(args, None)
        self.optimizer = make_optimizer(args, self.model)
        self.scheduler = make_scheduler(args, self.optimizer)
        self.feature_center = torch.zeros(num_classes, args.num_attentions * args.num_features)  # trainer.py:27

    def state_dict(self):
        return self.model.state_dict()

    def step(self, images, labels, epoch: int):
        import shims

        self.scheduler.last_epoch = epoch + shims.SCHEDULER_OFFSET  # trainer.py:31
        for g, lr in zip(self.optimizer.param_groups, self.scheduler._get_closed_form_lr()):
            g["lr"] = lr
        self.loss.start_log()
        self.model.train()
        self.optimizer.zero_grad()  # trainer.py:50-68
        outputs = self.model(images)
        center_batch = F.normalize(self.feature_center[labels], dim=-1)
        self.feature_center[labels] += self.args.L2_beta * (outputs[1].detach() - center_batch)
        loss = self.loss(center_batch, outputs, labels)
        loss.backward()
        self.optimizer.step()
        return self.optimizer.param_groups[0]["lr"], loss.item()

    def features(self, images):
        self.model.eval()
        with torch.no_grad():
            return self.model(images)[0]
