"""BDB: daizuozhuo/batch-dropblock-network, the README's Market run (``--optim=adam --adjust_lr
--max_epoch=400 --train_batch=128``, model BFE(num_classes, 1.0, 0.33)), against configs/bdb/market1501.yaml."""
from __future__ import annotations

from pathlib import Path

import torch

CONFIG = "bdb/market1501.yaml"
SIZE = (96, 32)  # global pooling and a band of round(0.33 H) rows: any size; the recipe's is 384x128
# adjust_lr(ep + 1) (main_reid.py:158): the warm-up staircase (0, 3, 4, 44), 1e-3 (45, 198), 1e-4 (199, 298),
# 1e-5 (299, 399)
EPOCHS = [0, 3, 4, 44, 198, 199, 298, 299, 399]

_BACKBONE = {"0": "backbone.conv1", "1": "backbone.bn1", "4": "backbone.layer1", "5": "backbone.layer2",
             "6": "backbone.layer3"}
#: the release's reduction biases (``nn.Conv2d(2048, 512, 1)``'s default bias, ``nn.Linear(2048, 1024, 1)``:
#: bias=1), each right before a BatchNorm; reid's reductions have none (see the README's findings)
NO_COUNTERPART = ("global_reduction.0.bias", "reduction.0.bias")


def map_name(k: str):
    if k in NO_COUNTERPART:
        return None
    head, rest = k.split(".", 1)
    if head == "backbone":
        i, rest = rest.split(".", 1)
        return f"{_BACKBONE[i]}.{rest}"
    return {"res_part": "backbone.layer4", "global_reduction": "global_reduction", "res_part2": "bottleneck",
            "reduction": "drop_reduction", "global_softmax": "heads.0.classifier",
            "softmax": "heads.1.classifier"}[head] + "." + rest


class Release:
    """models/networks.py BFE, utils/loss.py TripletLoss(None) + CrossEntropyLabelSmooth, and main_reid.py's
    criterion, Adam(get_optim_policy(), wd 5e-4) and adjust_lr (both read from its train() in the checkout);
    the update of trainers/trainer.py:train (forward, zero_grad, backward, step). The band's
    ``random.randint`` draws from torch's generator (reid's draw; shims.TorchRandom)."""

    def __init__(self, release_dir, num_classes: int, size):
        import models.networks as networks
        import shims
        from utils.loss import CrossEntropyLabelSmooth, TripletLoss

        networks.random = shims.TorchRandom
        self.model = networks.BFE(num_classes, 1.0, 0.33)  # main_reid.py:91, person data
        ns = {"embedding_criterion": TripletLoss(None), "xent_criterion": CrossEntropyLabelSmooth(num_classes)}
        main = Path(release_dir) / "main_reid.py"
        self.criterion = shims.nested_function(main, "train", "criterion", ns)
        self.adjust_lr = shims.nested_function(main, "train", "adjust_lr", {})
        self.optimizer = torch.optim.Adam(self.model.get_optim_policy(), lr=1e-4, weight_decay=5e-4)

    def state_dict(self):
        return self.model.state_dict()

    def step(self, images, labels, epoch: int):
        self.adjust_lr(self.optimizer, epoch + 1)  # main_reid.py:158
        self.model.train()
        score, feat = self.model(images)  # trainers/trainer.py:29-37
        loss = self.criterion(score, feat, labels)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return self.optimizer.param_groups[0]["lr"], loss.item()

    def features(self, images):
        self.model.eval()
        with torch.no_grad():
            return self.model(images)
