"""Shims that let the authors' released code run here, unmodified, in float64 on the CPU.

Written for the parity scripts (nothing of the releases is copied): a stand-in ``torchvision``
(``models.resnet``: a torchvision-equivalent ResNet written here; ``transforms``: inert), inert
modules for the releases' optional third-party imports (``ignite``, ``sklearn``, ``cv2``...), and
old-torch APIs (``Tensor.cuda`` on a CPU run, ``addmm_(beta, alpha, m1, m2)``).
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path

import torch
from torch import nn


class _Inert:
    """Any attribute, any call: returns an inert object (transforms, plotting, loggers)."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Inert()

    def __getattr__(self, name):
        return _Inert()


class _InertModule(types.ModuleType):
    def __init__(self, name):
        super().__init__(name)
        self.__path__ = []
        self.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Inert


# ---------------------------------------------------------------- torchvision-equivalent ResNet

def _conv3x3(inp, out, stride=1):
    return nn.Conv2d(inp, out, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(inp, out, stride=1):
    return nn.Conv2d(inp, out, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(inplanes, planes, stride), nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = _conv3x3(planes, planes), nn.BatchNorm2d(planes)
        self.downsample, self.stride = downsample, stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """torchvision's (v1.5: the stride on the 3x3 conv)."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1, self.bn1 = _conv1x1(inplanes, planes), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = _conv3x3(planes, planes, stride), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = _conv1x1(planes, planes * 4), nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample, self.stride = downsample, stride

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1, self.relu = nn.BatchNorm2d(64), nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(_conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _resnet(block, layers):
    def build(pretrained=False, progress=True, **kwargs):  # weights are copied from one side to the other
        return ResNet(block, layers, **kwargs)
    return build


resnet18, resnet34 = _resnet(BasicBlock, [2, 2, 2, 2]), _resnet(BasicBlock, [3, 4, 6, 3])
resnet50, resnet101 = _resnet(Bottleneck, [3, 4, 6, 3]), _resnet(Bottleneck, [3, 4, 23, 3])
resnet152 = _resnet(Bottleneck, [3, 8, 36, 3])


def _torchvision() -> None:
    tv, models = _InertModule("torchvision"), _InertModule("torchvision.models")
    resnet = _InertModule("torchvision.models.resnet")
    for name in ("BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50", "resnet101",
                 "resnet152"):
        setattr(resnet, name, globals()[name])
        setattr(models, name, globals()[name])
    resnet.model_urls = models.model_urls = {}
    models.resnet = resnet
    tv.models = models
    sys.modules.update({"torchvision": tv, "torchvision.models": models, "torchvision.models.resnet": resnet})
    for name in ("torchvision.transforms", "torchvision.transforms.functional", "torchvision.datasets",
                 "torchvision.utils"):
        mod = _InertModule(name)
        sys.modules[name] = mod
        setattr(sys.modules[name.rsplit(".", 1)[0]], name.rsplit(".", 1)[1], mod)


def _inert(names) -> None:
    for name in names:
        try:
            if importlib.util.find_spec(name) is not None:
                continue
        except (ImportError, ValueError):
            pass
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            sub = ".".join(parts[:i])
            if sub not in sys.modules:
                sys.modules[sub] = _InertModule(sub)
                if i > 1:
                    setattr(importlib.import_module(".".join(parts[:i - 1])), parts[i - 1], sys.modules[sub])


# ---------------------------------------------------------------- old torch APIs

_addmm_ = torch.Tensor.addmm_


def _old_addmm_(self, *args, **kwargs):
    """``addmm_(beta, alpha, mat1, mat2)`` (torch < 1.5) as well as the current form."""
    if len(args) == 4 and not isinstance(args[0], torch.Tensor):
        beta, alpha, m1, m2 = args
        return _addmm_(self, m1, m2, beta=beta, alpha=alpha)
    if len(args) == 3 and not isinstance(args[0], torch.Tensor):
        beta, m1, m2 = args
        return _addmm_(self, m1, m2, beta=beta)
    return _addmm_(self, *args, **kwargs)


INERT = ("ignite", "ignite.engine", "ignite.handlers", "ignite.metrics", "sklearn", "sklearn.preprocessing",
         "sklearn.metrics", "cv2", "yacs", "yacs.config", "tensorboardX", "scipy.misc")


#: where an epoch-start ``scheduler.step()`` leaves the schedule's index for the 0-based epoch e: e + 0
#: under PyTorch <= 1.0, whose scheduler constructor resets ``last_epoch`` to -1 after setting the first
#: lr (BoT's and MGN-pytorch's runs: MGN's log reports its best at "epoch 400 of 400"); e + 1 under
#: PyTorch >= 1.1, whose constructor leaves it at 0 (``parity.py --torch-1.1-schedulers``)
SCHEDULER_OFFSET = 0


def install(release_dir: str | Path, inert=INERT) -> None:
    """Float64 by default, the shims above, the release's directory first on ``sys.path``."""
    import torch._dynamo  # noqa: F401  (imported before the stand-ins: it looks up module specs)

    torch.set_default_dtype(torch.float64)
    torch.Tensor.cuda = lambda self, *a, **k: self
    nn.Module.cuda = lambda self, *a, **k: self
    torch.Tensor.addmm_ = _old_addmm_
    _torchvision()
    _inert(inert)
    sys.path.insert(0, str(Path(release_dir).resolve()))


def load_file(name: str, path: str | Path, package: str | None = None) -> types.ModuleType:
    """Import one file of a release under the module name ``name`` (its package can clash with
    ours: PCB's and RGA-Net's code is a package called ``reid``)."""
    spec = importlib.util.spec_from_file_location(name, str(path),
                                                  submodule_search_locations=None)
    mod = importlib.util.module_from_spec(spec)
    if package:
        mod.__package__ = package
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def py_random_state(step: int, state=None):
    """Seed Python's and NumPy's generators for ``step`` (returns their states), or restore ``state``."""
    import random

    import numpy as np
    if state is not None:
        random.setstate(state[0])
        np.random.set_state(state[1])
        return state
    random.seed(10_000 + step)
    np.random.seed(10_000 + step)
    return random.getstate(), np.random.get_state()


def nested_function(path: str | Path, outer: str, name: str, namespace: dict):
    """The function ``name`` defined inside the function ``outer`` of the file ``path`` (e.g. a
    release's lr schedule or criterion written inside ``main``), compiled from that file with the
    globals ``namespace`` (the names it closes over)."""
    import ast

    tree = ast.parse(Path(path).read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == outer:
            for inner in ast.walk(node):
                if isinstance(inner, ast.FunctionDef) and inner.name == name:
                    code = compile(ast.Module(body=[inner], type_ignores=[]), str(path), "exec")
                    exec(code, namespace)  # noqa: S102 - the release's own source, read from its checkout
                    return namespace[name]
    raise SystemExit(f"error: no function {outer}.{name} in {path}")


class TorchRandom:
    """``random``-module stand-in whose ``randint(a, b)`` draws from torch's generator (as reid does),
    so that both sides draw the same values from the same torch state."""

    @staticmethod
    def randint(a: int, b: int) -> int:
        return int(torch.randint(a, b + 1, (1,)))


def alias_package(alias: str, path: str | Path) -> types.ModuleType:
    """Make the release's package directory ``path`` importable as ``alias`` (its ``__init__`` is not run):
    PCB's and RGA-Net's code is a package called ``reid``, like ours."""
    pkg = types.ModuleType(alias)
    pkg.__path__ = [str(Path(path).resolve())]
    pkg.__spec__ = importlib.machinery.ModuleSpec(alias, None, is_package=True)
    pkg.__spec__.submodule_search_locations = pkg.__path__
    sys.modules[alias] = pkg
    return pkg
