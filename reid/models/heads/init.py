"""Weight initialisations shared by heads and networks, and the named init schemes of released code.

A network's ``init`` option names a scheme (validated by :func:`init_scheme`):

* ``default``: each head keeps its own initialisation (BNNeck and conv_reduction: kaiming fan_out,
  BN weight 1, classifier N(0, 0.001); reduction: :func:`init_laga`).
* ``mgn`` (seathiefwang/MGN-pytorch model/mgn.py ``_init_reduction``/``_init_fc``): reduction Conv2d
  kaiming fan_in, BN weight N(1, 0.02), classifier kaiming fan_out (std sqrt(2 / num_classes)).
* ``bdb`` (daizuozhuo/batch-dropblock-network models/networks.py ``weights_init_kaiming``): Conv2d
  kaiming fan_in, Linear (reductions and classifiers alike) kaiming fan_out, BN weight N(1, 0.02);
  its extra Bottleneck keeps PyTorch's constructor defaults (the release never re-initialises it).
* ``lagnet`` (SWJTU-3DVision/LAG-Net lag.py ``_init_reduction``, attentions.py ``FcWeight``):
  reduction Conv2d kaiming fan_in, embedding Linear kaiming fan_out, BN weight N(1, 0.02),
  classifier N(0, 0.001).

Every bias is 0.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from reid.registry import ConfigError, suggestion


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


def init_classifier(m: nn.Module, std: float | None = 0.001) -> None:
    """Classifier Linear: weight N(0, std) (``std=None``: kaiming_normal fan_out), bias 0."""
    if isinstance(m, nn.Linear):
        if std is None:
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_out")
        else:
            nn.init.normal_(m.weight, 0.0, std)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


@dataclass(frozen=True)
class InitScheme:
    """conv / linear: kaiming_normal mode (fan_in | fan_out) of embedding and reduction Conv2d /
    Linear weights; bn_std: BatchNorm weight N(1, bn_std) (0: exactly 1); classifier_std: classifier
    weight N(0, std) (None: kaiming fan_out); blocks: extra residual blocks ``kaiming`` (init_kaiming)
    or ``torch`` (PyTorch's constructor defaults)."""

    conv: str
    linear: str
    bn_std: float
    classifier_std: float | None
    blocks: str = "kaiming"

    def embedding(self, m: nn.Module) -> None:
        """For ``module.apply``: Conv2d / Linear kaiming by the scheme's modes, BatchNorm N(1, bn_std)."""
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            mode = self.conv if isinstance(m, nn.Conv2d) else self.linear
            nn.init.kaiming_normal_(m.weight, a=0, mode=mode)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine:
            if self.bn_std:
                nn.init.normal_(m.weight, 1.0, self.bn_std)
            else:
                nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def classifier(self, m: nn.Module) -> None:
        init_classifier(m, self.classifier_std)

    def apply(self, embedding: nn.Module | None, classifier: nn.Module | None) -> None:
        """Re-initialise a head: its embedding/reduction part and its classifier."""
        if embedding is not None:
            embedding.apply(self.embedding)
        if classifier is not None:
            classifier.apply(self.classifier)


#: name -> scheme; ``default`` (None): each head's own initialisation.
INIT_SCHEMES: dict[str, InitScheme | None] = {
    "default": None,
    "mgn": InitScheme(conv="fan_in", linear="fan_out", bn_std=0.02, classifier_std=None),
    "bdb": InitScheme(conv="fan_in", linear="fan_out", bn_std=0.02, classifier_std=None, blocks="torch"),
    "lagnet": InitScheme(conv="fan_in", linear="fan_out", bn_std=0.02, classifier_std=0.001),
}


def init_scheme(name: str, where: str = "init") -> InitScheme | None:
    """The scheme named ``name`` (None for ``default``); an unknown name is a ConfigError."""
    if name not in INIT_SCHEMES:
        raise ConfigError(f"{where}: unknown init scheme '{name}'{suggestion(str(name), INIT_SCHEMES)}")
    return INIT_SCHEMES[name]
