"""ResNet-18/34/50 (He et al., 2016) with torchvision's parameter names.

State-dict names are those of torchvision's ``resnet18/34/50`` (``conv1``, ``bn1``, ``layer1..4``
of BasicBlock / Bottleneck with ``conv1/bn1/conv2/bn2[/conv3/bn3]/downsample.0/.1``, ``fc``), so
its ImageNet checkpoints load with ``strict=True``. The stride-2 convolution of a Bottleneck is
``conv2`` (ResNet "v1.5", as torchvision). After loading, the classifier ``fc`` is dropped.

Stage shapes of ResNet-50 for a 384x128 input: stem 64x96x32, layer1 256x96x32, layer2 512x48x16,
layer3 1024x24x8, layer4 2048x12x4 (2048x24x8 with ``last_stride=1``).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from reid.checks import Stride
from reid.models.backbones.base import Backbone, ShapeSpec, WeightsError, set_stage_stride
from reid.registry import BACKBONES, suggestion

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "WeightsError", "resnet18", "resnet34", "resnet50",
           "set_stage_stride", "load_pretrained", "hub_checkpoint_path", "IMAGENET_FILES"]

#: torchvision ImageNet checkpoints by weights name: the first file is the one downloaded, the others
#: older names of the same weights, accepted from the cache. ``pretrained: true`` means IMAGENET1K_V1
#: (the weights re-ID papers used); IMAGENET1K_V2 (a newer, different training recipe) is loaded only
#: when named (``weights: IMAGENET1K_V2``), never in place of a missing V1 file.
IMAGENET_FILES = {
    "resnet18": {"IMAGENET1K_V1": ["resnet18-f37072fd.pth", "resnet18-5c106cde.pth"]},
    "resnet34": {"IMAGENET1K_V1": ["resnet34-b627a593.pth", "resnet34-333f7ec4.pth"]},
    "resnet50": {"IMAGENET1K_V1": ["resnet50-0676ba61.pth", "resnet50-19c8e357.pth"],
                 "IMAGENET1K_V2": ["resnet50-11ad3fa6.pth"]},
}
DEFAULT_WEIGHTS = "IMAGENET1K_V1"
URL_ROOT = "https://download.pytorch.org/models/"
URLS = {arch: URL_ROOT + files[DEFAULT_WEIGHTS][0] for arch, files in IMAGENET_FILES.items()}
STAGES = ("layer1", "layer2", "layer3", "layer4")


def conv3x3(inp: int, out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inp, out, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(inp: int, out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inp, out, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs + identity; [B, inp, H, W] -> [B, planes, H/s, W/s]."""

    expansion = 1

    def __init__(self, inp: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inp, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def strided_convs(self) -> list[nn.Conv2d]:
        """The convolutions that carry the block's stride."""
        return [self.conv1] + ([self.downsample[0]] if self.downsample is not None else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (stride) -> 1x1 (x4) + identity; [B, inp, H, W] -> [B, 4*planes, H/s, W/s]."""

    expansion = 4

    def __init__(self, inp: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1x1(inp, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * 4)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def strided_convs(self) -> list[nn.Conv2d]:
        """The convolutions that carry the block's stride."""
        return [self.conv2] + ([self.downsample[0]] if self.downsample is not None else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(Backbone):
    """ResNet feature extractor, [B, 3, H, W] -> [B, feature_dim, H/32, W/32] (H/16 with last_stride=1).

    Stages (:class:`Backbone`): ``stem`` (conv1, bn1, relu, maxpool), ``layer1..layer4``;
    ``output_shape()`` their channels and strides; ``branch_stage(name, stride)`` deep-copies a stage.
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: list[int], last_stride: int = 2,
                 with_fc: bool = True, num_classes: int = 1000, stem_relu: bool = True):
        super().__init__()
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
        self.inplanes = 64
        self.last_stride = last_stride
        self.stem_relu = bool(stem_relu)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0], 1)
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], last_stride)
        self._channels = [c * block.expansion for c in (64, 128, 256, 512)]
        if with_fc:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(self.feature_dim, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    @property
    def has_fc(self) -> bool:
        return hasattr(self, "fc")

    def drop_classifier(self) -> None:
        """Remove the ImageNet classifier (``fc``, ``avgpool``) for use as a re-ID backbone."""
        for name in ("fc", "avgpool"):
            if hasattr(self, name):
                delattr(self, name)

    @property
    def stem(self) -> nn.Sequential:
        """conv1 -> bn1 -> relu -> maxpool (shares the modules), [B,3,H,W] -> [B,64,H/4,W/4];
        without the relu when ``stem_relu`` is false (BoT's release: its ResNet has no stem ReLU)."""
        if not self.stem_relu:
            return nn.Sequential(self.conv1, self.bn1, self.maxpool)
        return nn.Sequential(self.conv1, self.bn1, self.relu, self.maxpool)

    def stage(self, name: str) -> nn.Module:
        """The stage ``name`` (stem, layer1..layer4), sharing parameters."""
        self._check_stage(name)
        return self.stem if name == "stem" else getattr(self, name)

    def output_shape(self) -> dict[str, ShapeSpec]:
        """stem 64 ch /4; layer1..layer4 64/128/256/512 x expansion at /4, /8, /16, /32 (/16 with
        last_stride 1)."""
        strides = (4, 8, 16, 16 * self.last_stride)
        return {"stem": ShapeSpec(64, 4),
                **{s: ShapeSpec(c, st) for s, c, st in zip(STAGES, self._channels, strides)}}

    def set_stride(self, stage: nn.Module, stride: int) -> nn.Module:
        return set_stage_stride(stage, stride)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> the layer4 map [B, feature_dim, h, w]."""
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The layer4 map, or ImageNet logits [B, 1000] while the classifier is attached."""
        x = self.forward_features(x)
        if self.has_fc:
            return self.fc(torch.flatten(self.avgpool(x), 1))
        return x


def hub_checkpoint_path(arch: str, name: str = DEFAULT_WEIGHTS) -> Path:
    """Where torch.hub caches the torchvision file of ``arch``'s weights ``name``:
    ``$TORCH_HOME/hub/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_FILES[arch][name][0]


def is_weights_name(weights: str) -> bool:
    """``weights`` names torchvision weights (IMAGENET1K_V1, ...) rather than a file."""
    return weights.upper().startswith("IMAGENET1K")


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return {k.removeprefix("module."): v for k, v in state.items()}


def _cached_weights(arch: str, name: str, download: bool) -> Path:
    """The cached file of torchvision weights ``name`` (downloaded when missing and ``download``)."""
    if name not in IMAGENET_FILES[arch]:
        raise WeightsError(f"unknown ImageNet weights '{name}' for {arch} (model.backbone.weights)"
                           f"{suggestion(name, IMAGENET_FILES[arch])}")
    path = hub_checkpoint_path(arch, name)
    found = [p for p in (path.parent / f for f in IMAGENET_FILES[arch][name]) if p.is_file()]
    if found:
        return found[0]
    error = "downloads disabled"
    if download:
        try:
            torch.hub.load_state_dict_from_url(URL_ROOT + path.name, map_location="cpu", progress=False,
                                               weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any network failure gets the same advice
            error = f"{type(exc).__name__}: {exc}"
    if path.is_file():
        return path
    others = [f"{f} ({other})" for other, files in IMAGENET_FILES[arch].items() if other != name
              for f in files if (path.parent / f).is_file()]
    note = (f" The cache holds {', '.join(others)}: other weights, used only when named "
            "(model.backbone.weights=<name>), never in their place." if others else "")
    raise WeightsError(
        f"ImageNet weights {name} for {arch} are not available offline ({error}). Download "
        f"{URL_ROOT + path.name} and place it as {path} (the torch.hub cache; $TORCH_HOME moves it), "
        f"or pass model.backbone.weights=PATH, or set model.backbone.pretrained=false.{note}"
    )


def load_pretrained(model: ResNet, arch: str, weights: str | None = None, download: bool = True) -> Path:
    """Load ImageNet weights into ``model`` (with its fc) strictly; returns the file used.

    ``weights``: a local file, or torchvision weights by name (IMAGENET1K_V1; IMAGENET1K_V2 for
    ResNet-50). None: IMAGENET1K_V1. Named weights are looked up in the torch.hub cache, then
    (``download``) fetched from torchvision's URL; offline without the file: a :class:`WeightsError`
    saying which file to place where, or to set pretrained off.
    """
    if weights and not is_weights_name(weights):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"{arch} weights file not found: {path} (model.backbone.weights); "
                               "or set model.backbone.pretrained=false")
    else:
        path = _cached_weights(arch, (weights or DEFAULT_WEIGHTS).upper(), download)
    state = _read_state(path)
    if not any(k.startswith("fc.") for k in state):  # a backbone saved without its classifier
        model.drop_classifier()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path}: not a {arch} state dict with torchvision's names: {exc}") from None
    return path


def _build(arch: str, block, layers: list[int], pretrained: bool, weights: str | None, last_stride: int,
           stem_relu: bool = True) -> ResNet:
    model = ResNet(block, layers, last_stride=last_stride, stem_relu=stem_relu)
    if pretrained or weights:
        load_pretrained(model, arch, weights)
    model.drop_classifier()
    return model


@BACKBONES.register("resnet18")
def resnet18(pretrained: bool = False, weights: str | None = None, last_stride: Stride = 2,
             stem_relu: bool = True) -> ResNet:
    """ResNet-18 backbone (512-D layer4); ``stem_relu: false`` drops the ReLU after bn1."""
    return _build("resnet18", BasicBlock, [2, 2, 2, 2], pretrained, weights, last_stride, stem_relu)


@BACKBONES.register("resnet34")
def resnet34(pretrained: bool = False, weights: str | None = None, last_stride: Stride = 2,
             stem_relu: bool = True) -> ResNet:
    """ResNet-34 backbone (512-D layer4); ``stem_relu: false`` drops the ReLU after bn1."""
    return _build("resnet34", BasicBlock, [3, 4, 6, 3], pretrained, weights, last_stride, stem_relu)


@BACKBONES.register("resnet50")
def resnet50(pretrained: bool = False, weights: str | None = None, last_stride: Stride = 2,
             stem_relu: bool = True) -> ResNet:
    """ResNet-50 backbone (2048-D layer4); ``stem_relu: false`` drops the ReLU after bn1."""
    return _build("resnet50", Bottleneck, [3, 4, 6, 3], pretrained, weights, last_stride, stem_relu)
