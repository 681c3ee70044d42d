"""Weight initialisations shared by heads and networks."""
from __future__ import annotations

from torch import nn


def init_kaiming(m: nn.Module) -> None:
    """Linear/Conv: kaiming_normal (fan_out), bias 0; BatchNorm: weight 1, bias 0."""
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        nn.init.kaiming_normal_(m.weight, a=0, mode="fan_out")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine:
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def init_laga(m: nn.Module) -> None:
    """LAGA-Net reduction: Linear kaiming_normal (fan_out), bias 0; BatchNorm1d weight N(1, 0.02), bias 0."""
    if isinstance(m, nn.Linear):
        nn.init.kaiming_normal_(m.weight, a=0, mode="fan_out")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm1d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def init_classifier(m: nn.Module, std: float = 0.001) -> None:
    """Classifier Linear: weight N(0, std), bias 0."""
    if isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, 0.0, std)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
