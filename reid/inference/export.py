"""Export a trained model to ONNX or TorchScript: float32 input [N, 3, H, W] (dynamic N), already
normalised as the test images are (RGB in [0, 255] -> (x / 255 - pixel_mean) / pixel_std, resized to
``input.size``), output the retrieval features [N, D] the evaluator uses (``test.flip`` averaging in
the graph, L2-normalised in the graph unless ``normalize=False``). The preprocessing is not in the
graph; it is stated in the file's metadata (:func:`export_metadata`): ONNX ``metadata_props``,
TorchScript extra file ``reid.json``."""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMATS = ("onnx", "torchscript")
#: ONNX opset written.
OPSET = 17


class FeatureGraph(nn.Module):
    """``model`` as a plain ``images [N, 3, H, W] -> features [N, D]`` module (eval mode)."""

    def __init__(self, model: nn.Module, flip: bool = False, normalize: bool = True):
        super().__init__()
        self.model, self.flip, self.normalize = model.eval(), bool(flip), bool(normalize)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        f = self.model(images)["features"].float()
        if self.flip:
            f = (f + self.model(torch.flip(images, dims=[3]))["features"].float()) / 2
        if self.normalize:
            f = nn.functional.normalize(f, dim=1)
        return f


def export_metadata(cfg: Any, normalize: bool, checkpoint: str | os.PathLike | None = None) -> dict[str, str]:
    """What a user of the exported file must know, as strings: input layout, size and normalisation,
    output, the model and its source."""
    h, w = (int(v) for v in cfg.input.size)
    return {
        "reid.model": str(cfg.model.name),
        "reid.input": f"float32 [N, 3, {h}, {w}] RGB, N dynamic",
        "reid.input_size": json.dumps([h, w]),
        "reid.preprocess": f"resize to input_size ({cfg.input.interpolation}); "
                           "x = (rgb / 255 - pixel_mean) / pixel_std",
        "reid.pixel_mean": json.dumps([float(v) for v in cfg.input.pixel_mean]),
        "reid.pixel_std": json.dumps([float(v) for v in cfg.input.pixel_std]),
        "reid.normalisation_in_graph": "false (apply reid.preprocess to the input)",
        "reid.output": "features [N, D]" + (", L2-normalised" if normalize else ", raw (not L2-normalised)"),
        "reid.flip_averaged": json.dumps(bool(cfg.test.flip)),
        "reid.metric": str(cfg.test.metric),
        "reid.checkpoint": str(checkpoint or ""),
    }


def export_onnx(graph: FeatureGraph, example: torch.Tensor, path: str | os.PathLike,
                metadata: dict[str, str] | None = None, dynamo: bool = False) -> Path:
    """Write ``graph`` as ONNX (opset :data:`OPSET`, dynamic batch) with ``metadata``. The default
    is torch.onnx's TorchScript-based exporter (``dynamo=False``: 5-10x faster here, identical
    outputs); ``dynamo=True`` uses the torch.export-based one (needs onnxscript)."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = {"input_names": ["images"], "output_names": ["features"], "opset_version": OPSET}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamo:
            batch = torch.export.Dim("batch", min=1, max=4096)
            program = torch.onnx.export(graph, (example,), dynamo=True, dynamic_shapes=({0: batch},),
                                        verbose=False, **names)
            program.model_proto  # noqa: B018 - built lazily
            program.save(str(path))
        else:
            torch.onnx.export(graph, (example,), str(path), dynamo=False,
                              dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}}, **names)
    proto = onnx.load(str(path))
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return path


def export_torchscript(graph: FeatureGraph, example: torch.Tensor, path: str | os.PathLike,
                       metadata: dict[str, str] | None = None) -> Path:
    """Write ``graph`` traced to TorchScript; ``metadata`` as the extra file ``reid.json``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(graph, example, check_trace=False)
    torch.jit.save(traced, str(path), _extra_files={"reid.json": json.dumps(metadata or {}, indent=1)})
    return path


def export_model(model: nn.Module, cfg: Any, path: str | os.PathLike, fmt: str, normalize: bool = True,
                 checkpoint: str | os.PathLike | None = None, batch: int = 2, dynamo: bool = False) -> Path:
    """Export ``model`` (with ``cfg``'s input size and ``test.flip``) to ``path`` in ``fmt``
    (onnx | torchscript), traced with a random batch of ``batch`` images; ``dynamo``: see
    :func:`export_onnx`."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {FORMATS}")
    graph = FeatureGraph(model.cpu(), flip=bool(cfg.test.flip), normalize=normalize)
    example = torch.randn(batch, 3, *(int(v) for v in cfg.input.size), generator=torch.Generator().manual_seed(0))
    meta = export_metadata(cfg, normalize, checkpoint)
    if fmt == "onnx":
        return export_onnx(graph, example, path, meta, dynamo=dynamo)
    return export_torchscript(graph, example, path, meta)
