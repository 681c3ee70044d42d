"""MGN: seathiefwang/MGN-pytorch, the demo.sh run with Market's best numbers (Adam + AMSGrad 2e-4,
``--decay_type step_320_380 --epochs 400 --loss 1*CrossEntropy+2*Triplet --margin 1.2``, ``--pool``
default avg), against configs/mgn/market1501.yaml."""
from __future__ import annotations

from types import SimpleNamespace as NS

import torch

CONFIG = "mgn/market1501.yaml"
# a quarter of the recipe's 384x128 (the 2-core budget): the release's pooling kernels (model/mgn.py, sized
# for 384x128) are divided by 4 to match (see Release)
SIZE = (96, 32)
# trainer.py:31 steps the scheduler before each epoch: under PyTorch <= 1.0 the 0-based epoch e trains at
# last_epoch e (shims.SCHEDULER_OFFSET), x0.1 at 320 and 380, and terminate() (trainer.py:127) stops after
# epoch 399
EPOCHS = [0, 319, 320, 379, 380, 399]

_REDUCTION = {0: "branches.0.heads.0", 1: "branches.1.heads.0", 2: "branches.2.heads.0",
              3: "branches.1.heads.1", 4: "branches.1.heads.2",
              5: "branches.2.heads.1", 6: "branches.2.heads.2", 7: "branches.2.heads.3"}
_FC = {"fc_id_2048_0": "branches.0.heads.0", "fc_id_2048_1": "branches.1.heads.0",
       "fc_id_2048_2": "branches.2.heads.0", "fc_id_256_1_0": "branches.1.heads.1",
       "fc_id_256_1_1": "branches.1.heads.2", "fc_id_256_2_0": "branches.2.heads.1",
       "fc_id_256_2_1": "branches.2.heads.2", "fc_id_256_2_2": "branches.2.heads.3"}
_TRUNK = {"0": "trunk.0.0", "1": "trunk.0.1", "4": "trunk.1", "5": "trunk.2", "6": "trunk.3.0"}


def map_name(k: str) -> str:
    """model/mgn.py names -> reid's multibranch names (trunk, branches.b.stages, branches.b.heads.h)."""
    head, rest = k.split(".", 1)
    if head == "backone":
        i, rest = rest.split(".", 1)
        return f"{_TRUNK[i]}.{rest}"
    if head in ("p1", "p2", "p3"):
        b = int(head[1]) - 1
        stage, rest = rest.split(".", 1)
        if stage == "0":  # layer3[1:]: reid keeps the block indices 1..5
            i, rest = rest.split(".", 1)
            return f"branches.{b}.stages.0.{int(i) + 1}.{rest}"
        return f"branches.{b}.stages.1.{rest}"
    if head.startswith("reduction_"):
        return f"{_REDUCTION[int(head[10:])]}.reduction.{rest}"
    return f"{_FC[head]}.classifier.{rest}"


# release feature order: fg_p1, fg_p2, fg_p3, f0_p2, f1_p2, f0_p3, f1_p3, f2_p3; reid: branch by branch
FEATURE_ORDER = [0, 1, 3, 4, 2, 5, 6, 7]


class Release:
    """model/mgn.py MGN, loss/__init__.py Loss, utils/utility.py make_optimizer / make_scheduler with
    the demo.sh run's arguments over option.py's defaults; the update of trainer.py:train."""

    def __init__(self, release_dir, num_classes: int, size):
        from loss import Loss
        from model.mgn import MGN
        from utils.utility import make_optimizer, make_scheduler

        args = NS(num_classes=num_classes, pool="avg", feats=256, optimizer="ADAM", lr=2e-4, beta1=0.9, beta2=0.999,
                  epsilon=1e-8, amsgrad=True, weight_decay=5e-4, decay_type="step_320_380", gamma=0.1,
                  loss="1*CrossEntropy+2*Triplet", margin=1.2, nGPU=1, model="MGN", cpu=True, load="",
                  momentum=0.9, dampening=0, nesterov=False)
        self.model = MGN(args)
        scale = 384 // size[0]
        if size[0] * scale != 384 or size[1] * scale != 128:
            raise SystemExit("error: MGN's --size must be 384x128 divided by an integer (its pooling kernels)")
        for name in ("maxpool_zg_p1", "maxpool_zg_p2", "maxpool_zg_p3", "maxpool_zp2", "maxpool_zp3"):
            pool = getattr(self.model, name)
            k = tuple(v // scale for v in pool.kernel_size)
            pool.kernel_size = pool.stride = k
        self.loss = Loss(args, None)
        self.optimizer = make_optimizer(args, self.model)
        self.scheduler = make_scheduler(args, self.optimizer)

    def state_dict(self):
        return self.model.state_dict()

    def step(self, images, labels, epoch: int):
        import shims

        self.scheduler.last_epoch = epoch + shims.SCHEDULER_OFFSET  # trainer.py:31, before the epoch's steps
        for g, lr in zip(self.optimizer.param_groups, self.scheduler._get_closed_form_lr()):
            g["lr"] = lr  # torch < 1.4's MultiStepLR.get_lr: the closed form
        self.loss.start_log()
        self.model.train()
        self.optimizer.zero_grad()  # trainer.py:46-50
        outputs = self.model(images)
        loss = self.loss(outputs, labels)
        loss.backward()
        self.optimizer.step()
        return self.optimizer.param_groups[0]["lr"], loss.item()

    def features(self, images):
        self.model.eval()
        with torch.no_grad():
            predict = self.model(images)[0]
        return torch.cat([predict.split(256, dim=1)[i] for i in FEATURE_ORDER], dim=1)
